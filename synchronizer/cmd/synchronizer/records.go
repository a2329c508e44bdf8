package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
	"driftless.dev/synchronizer/internal/metrics"
	"driftless.dev/synchronizer/internal/recorder"
	"driftless.dev/synchronizer/internal/source"
)

// recordFlags turn on the deployment records (docs/records.md).
type recordFlags struct {
	record, revert       bool
	cluster, notes       string
	signingKey, passFile string
	key                  *openpgp.Entity // read by validate
}

func (f *recordFlags) flags(fs *pflag.FlagSet) {
	fs.BoolVar(&f.record, "record", false, "append a deployment record (applied, healthy, degraded) to the Git note of each commit applied; the Git credentials must be allowed to push (see docs/records.md)")
	fs.StringVar(&f.cluster, "cluster-name", "", "this cluster's name in the records and in Promotion documents (required with --record)")
	fs.StringVar(&f.notes, "record-notes", records.DefaultNotes, "the notes ref records go to: refs/notes/<name>")
	fs.BoolVar(&f.revert, "revert-on-failure", false, "ask, in the degraded record of a commit whose rollout failed, for the automator to revert it (needs --record)")
	fs.StringVar(&f.signingKey, "record-signing-key", "", "armored OpenPGP private key file to sign the records' notes commits with (the automator's --record-keyring trusts only signed records)")
	fs.StringVar(&f.passFile, "record-signing-passphrase-file", "", "file holding --record-signing-key's passphrase")
}

func (f *recordFlags) validate() error {
	var errs []error
	if f.record && f.cluster == "" {
		errs = append(errs, errors.New("--record needs --cluster-name: the name this cluster has in the records"))
	}
	if f.cluster != "" && !records.ValidName(f.cluster) {
		errs = append(errs, fmt.Errorf("--cluster-name %q: want lower-case letters, digits, '-' and '.', at most 63", f.cluster))
	}
	if f.revert && !f.record {
		errs = append(errs, errors.New("--revert-on-failure needs --record: the revert is asked for in the record"))
	}
	if f.signingKey != "" && !f.record {
		errs = append(errs, errors.New("--record-signing-key needs --record"))
	}
	if f.notes == "" || !records.ValidName(f.notes) {
		errs = append(errs, fmt.Errorf("--record-notes %q: want a short name such as %q", f.notes, records.DefaultNotes))
	}
	if f.signingKey != "" && f.record {
		if err := f.readKey(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (f *recordFlags) readKey() error {
	armored, err := os.ReadFile(f.signingKey)
	if err != nil {
		return fmt.Errorf("--record-signing-key: %w", err)
	}
	var pass []byte
	if f.passFile != "" {
		if pass, err = os.ReadFile(f.passFile); err != nil {
			return fmt.Errorf("--record-signing-passphrase-file: %w", err)
		}
	}
	if f.key, err = gitrepo.ParseSigningKey(armored, bytes.TrimSpace(pass)); err != nil {
		return fmt.Errorf("--record-signing-key %s: %w", f.signingKey, err)
	}
	return nil
}

// recorder returns the deployment recorder, or nil without --record. It
// pushes with the source's credentials, to the source's repository.
func (f *recordFlags) recorder(scfg source.Config, m *metrics.Metrics, log *zap.Logger) (*recorder.Recorder, error) {
	if !f.record {
		return nil, nil
	}
	cfg := recorder.Config{
		Cluster: f.cluster, RevertOnFailure: f.revert,
		Author: gitrepo.Signature{Name: "Driftless Synchronizer (" + f.cluster + ")", Email: "synchronizer@driftless.dev"},
	}
	cfg.SignKey = f.key
	mirror, err := gitrepo.OpenMirror("", scfg.URL, scfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("--record: %w", err)
	}
	return recorder.New(cfg, mirror.Notes(f.notes), m, log)
}
