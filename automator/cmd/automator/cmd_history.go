package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"driftless.dev/automator/internal/history"
	"driftless.dev/automator/internal/promote"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
)

// historyConfig says where the history is read: a clone on disk, or the
// repository's URL (fetched into a bare mirror).
type historyConfig struct {
	dir, gitURL, branch         string
	gitUser, gitPasswordFile    string
	sshKey, knownHosts, workdir string
	policyPath, notes           string
	branches, production        []string
	image, since, output        string
}

func historyCommand() *cobra.Command {
	var c historyConfig
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Per image version, from Git alone: its bump commit, when each cluster applied it and became healthy, its promotions, and the lead time to production",
		Long: `history reads the deployment records (Git notes the synchronizers write with --record) and
the branches' history, and prints per image version: when the automator committed the bump,
when each cluster applied it and became healthy (or degraded), when and by whom it was promoted,
whether it was reverted, where it runs now and since when, and the lead time from the bump
commit to healthy in production. It needs a clone, or the repository's URL, and no cluster
credentials.

A clone has the notes once fetched: git fetch origin 'refs/notes/*:refs/notes/*'`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			since, err := parseSince(c.since, time.Now())
			if err != nil {
				return err
			}
			if c.output != "text" && c.output != "json" {
				return fmt.Errorf("--output %q: want text or json", c.output)
			}
			src, production, err := c.source(cmd)
			if err != nil {
				return err
			}
			rep, err := history.Build(src, history.Options{Image: c.image, Since: since, Production: production})
			if err != nil {
				return err
			}
			if c.output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printHistory(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&c.dir, "dir", "", "a clone to read (with the notes fetched); or give --git-url")
	fs.StringVar(&c.gitURL, "git-url", "", "the repository to read, fetched into --workdir (https://, http:// or ssh://)")
	fs.StringVar(&c.branch, "git-branch", "main", "the branch the automator follows: its Promotion documents name the other branches")
	fs.StringVar(&c.gitUser, "git-username", "", "HTTP user name (default \"git\" when only a token is given)")
	fs.StringVar(&c.gitPasswordFile, "git-password-file", "", "file holding the HTTP password or token (or DRIFTLESS_GIT_PASSWORD)")
	fs.StringVar(&c.sshKey, "git-ssh-key", "", "SSH private key file, for ssh:// URLs")
	fs.StringVar(&c.knownHosts, "git-known-hosts", "", "known_hosts file to check the SSH server against")
	fs.StringVar(&c.workdir, "workdir", "", "where --git-url is mirrored (default: in memory)")
	fs.StringVar(&c.policyPath, "policy-path", ".", "folder searched for Promotion documents")
	fs.StringVar(&c.notes, "record-notes", records.DefaultNotes, "the notes ref of the records: refs/notes/<name>")
	fs.StringSliceVar(&c.branches, "branch", nil, "branches to read (default: --git-branch and the branches its Promotion documents name)")
	fs.StringSliceVar(&c.production, "production-branch", nil, "branches whose clusters are production, for the lead time (default: the Promotion targets that promote nowhere further)")
	fs.StringVar(&c.image, "image", "", "only versions whose reference contains this (team/web, team/web:1.4.2)")
	fs.StringVar(&c.since, "since", "", "only versions committed since: a duration back (72h) or a date (2026-11-01, RFC 3339)")
	fs.StringVar(&c.output, "output", "text", "text or json")
	return cmd
}

// parseSince reads --since.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration (72h) or a date (2026-11-01 or RFC 3339)", s)
}

// source opens the clone or mirror, and finds the branches and the
// production branches.
func (c *historyConfig) source(cmd *cobra.Command) (history.Source, []string, error) {
	var src history.Source
	if (c.dir == "") == (c.gitURL == "") {
		return src, nil, errors.New("give --dir (a clone) or --git-url")
	}
	if !records.ValidName(c.notes) {
		return src, nil, fmt.Errorf("--record-notes %q: want a short name such as %q", c.notes, records.DefaultNotes)
	}
	notesRef := gitrepo.NotesRef(c.notes)
	var repo *git.Repository
	var tip func(branch string) (plumbing.Hash, bool)
	var fetch func(branches []string) error
	if c.dir != "" {
		r, err := git.PlainOpenWithOptions(c.dir, &git.PlainOpenOptions{DetectDotGit: true})
		if err != nil {
			return src, nil, fmt.Errorf("--dir %s: %w", c.dir, err)
		}
		repo = r
		tip = func(b string) (plumbing.Hash, bool) {
			for _, name := range []plumbing.ReferenceName{plumbing.NewRemoteReferenceName("origin", b), plumbing.NewBranchReferenceName(b)} {
				if ref, err := repo.Reference(name, true); err == nil {
					return ref.Hash(), true
				}
			}
			return plumbing.ZeroHash, false
		}
		fetch = func([]string) error { return nil }
		if _, err := repo.Reference(notesRef, true); err != nil {
			return src, nil, fmt.Errorf("%s is not in the clone %s: git fetch origin '%s:%s' first", notesRef, c.dir, notesRef, notesRef)
		}
	} else {
		auth := gitrepo.Auth{Username: c.gitUser, SSHKeyFile: c.sshKey, SSHKnownHosts: c.knownHosts}
		if c.gitPasswordFile != "" {
			b, err := os.ReadFile(c.gitPasswordFile)
			if err != nil {
				return src, nil, fmt.Errorf("--git-password-file: %w", err)
			}
			auth.Password = strings.TrimSpace(string(b))
		} else if p, ok := os.LookupEnv("DRIFTLESS_GIT_PASSWORD"); ok {
			auth.Password = p
		}
		m, err := gitrepo.OpenMirror(c.workdir, c.gitURL, auth)
		if err != nil {
			return src, nil, err
		}
		repo = m.Repository()
		tips := map[plumbing.ReferenceName]plumbing.Hash{}
		fetch = func(branches []string) error {
			refs := []plumbing.ReferenceName{notesRef}
			for _, b := range branches {
				refs = append(refs, gitrepo.BranchRef(b))
			}
			got, err := m.Fetch(cmd.Context(), refs...)
			for k, v := range got {
				tips[k] = v
			}
			return err
		}
		tip = func(b string) (plumbing.Hash, bool) {
			h, ok := tips[gitrepo.BranchRef(b)]
			return h, ok
		}
	}
	if err := fetch([]string{c.branch}); err != nil {
		return src, nil, err
	}
	branches, production := c.branches, c.production
	if head, ok := tip(c.branch); ok && (len(branches) == 0 || len(production) == 0) {
		hc, err := repo.CommitObject(head)
		if err != nil {
			return src, nil, fmt.Errorf("read %s: %w", c.branch, err)
		}
		ps, docErrs, err := promote.Documents(hc, c.policyPath)
		if err != nil {
			return src, nil, err
		}
		if docErrs != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "some Promotion documents were skipped:\n%v\n", docErrs)
		}
		derived, targets := []string{c.branch}, []string{}
		froms := map[string]bool{}
		for _, p := range ps {
			derived = append(derived, p.Spec.From, p.Spec.To)
			froms[p.Spec.From] = true
			targets = append(targets, p.Spec.To)
		}
		if len(branches) == 0 {
			branches = derived
		}
		if len(production) == 0 {
			for _, t := range targets {
				if !froms[t] {
					production = append(production, t)
				}
			}
		}
	}
	slices.Sort(branches)
	branches = slices.Compact(branches)
	if err := fetch(branches); err != nil {
		return src, nil, err
	}
	src.Objects, src.Branches = repo.Storer, map[string]plumbing.Hash{}
	for _, b := range branches {
		h, ok := tip(b)
		if !ok {
			return src, nil, fmt.Errorf("branch %s is not in the repository", b)
		}
		src.Branches[b] = h
	}
	notes, err := gitrepo.ReadNotes(repo, notesRef)
	if err != nil {
		return src, nil, err
	}
	src.Notes = map[string]string{}
	for h, text := range notes {
		src.Notes[h.String()] = text
	}
	slices.Sort(production)
	return src, slices.Compact(production), nil
}

// printHistory prints a report for a person, one block per version.
func printHistory(w io.Writer, rep history.Report) {
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }
	after := func(t, from time.Time) string {
		if from.IsZero() {
			return ""
		}
		return " (+" + t.Sub(from).Round(10*time.Millisecond).String() + ")"
	}
	if len(rep.Versions) == 0 {
		fmt.Fprintln(w, "no image version found: no bump commit on the branches read, and no deployment record")
	}
	for i, v := range rep.Versions {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, v.Image)
		var t0 time.Time
		if b := v.Bump; b != nil {
			t0 = b.Time
			fmt.Fprintf(w, "  committed   %s  %-8s %s  by %s\n", ts(b.Time), b.Branch, short(b.Hash), b.Author)
		} else {
			fmt.Fprintf(w, "  committed   (no bump commit on the branches read)\n")
		}
		for _, p := range v.Promotions {
			how := "by hand"
			if p.Gate != "" {
				how = "gate " + p.Gate
			}
			fmt.Fprintf(w, "  promoted    %s  %-8s %s  by %s (%s)%s\n", ts(p.Time), p.Branch, short(p.Hash), p.Author, how, after(p.Time, t0))
		}
		for _, d := range v.Clusters {
			fmt.Fprintf(w, "  %-10s  applied %s%s", d.Cluster, ts(d.Applied), after(d.Applied, t0))
			switch {
			case !d.Healthy.IsZero():
				fmt.Fprintf(w, ", healthy %s%s", ts(d.Healthy), after(d.Healthy, t0))
			case !d.Degraded.IsZero():
				fmt.Fprintf(w, ", degraded %s: %s", ts(d.Degraded), d.Message)
			}
			if d.Running {
				fmt.Fprintf(w, "; running since %s\n", ts(d.RunningSince))
			} else {
				fmt.Fprintf(w, "; gone %s\n", ts(d.Left))
			}
		}
		if r := v.Reverted; r != nil {
			fmt.Fprintf(w, "  reverted    %s  %s  by %s: %s\n", ts(r.Time), short(r.Commit), r.By, r.Why)
		}
		if v.LeadTime > 0 {
			fmt.Fprintf(w, "  lead time   %s (bump commit → healthy in %s)\n", v.LeadTime.Round(10*time.Millisecond), strings.Join(rep.Production, ", "))
		}
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(w, "\n%d note line(s) are not records and were left out\n", len(rep.Skipped))
	}
}

func short(h string) string {
	if len(h) > 10 {
		return h[:10]
	}
	return h
}
