package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"

	"driftless.dev/automator/internal/promote"
	"driftless.dev/shared/gitrepo"
)

// reportGates logs an evaluation of the gates as the loop logs a pass:
// Info for a change of state, once; Error once per failure.
func reportGates(log *zap.Logger, res promote.Result, err error) {
	if err != nil {
		if res.Untrusted != nil {
			log.Error("refusing to read Promotion documents of an untrusted head", zap.String("commit", res.Untrusted.Commit), zap.String("reason", res.Untrusted.Reason))
			return
		}
		log.Error("gates not evaluated", zap.Error(err))
		return
	}
	if res.DocErrs != nil {
		log.Error("some Promotion documents were skipped", zap.Error(res.DocErrs))
	}
	for _, g := range res.Gates {
		fields := []zap.Field{zap.String("promotion", g.Name), zap.String("state", string(g.State)), zap.String("candidate", g.Candidate), zap.String("reason", g.Reason)}
		switch {
		case g.State == promote.Failed:
			log.Error("gate failed", append(fields, zap.Error(g.Err))...)
		case g.State == promote.Promoted || g.State == promote.Proposed:
			log.Info("promoted", append(fields, zap.String("revision", g.Commit))...)
		case g.Changed:
			log.Info("gate", fields...)
		}
	}
	if rv := res.Revert; rv != nil {
		fields := []zap.Field{zap.String("commit", rv.Commit), zap.String("cluster", rv.Cluster), zap.Strings("images", rv.Images)}
		switch {
		case rv.Err != nil:
			log.Error("revert", append(fields, zap.String("revision", rv.Revert), zap.Error(rv.Err))...)
		case rv.Revert != "":
			log.Info("reverted a bump whose rollout failed", append(fields, zap.String("revision", rv.Revert))...)
		case rv.Changed:
			log.Warn("degraded head not reverted", append(fields, zap.String("reason", rv.Reason))...)
		}
	}
}

// printGates shows each gate for plan: what it waits for and since when.
func printGates(w io.Writer, res promote.Result, err error) {
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }
	if err != nil {
		fmt.Fprintf(w, "\ngates: not evaluated: %s\n", gitrepo.Redact(err.Error()))
		return
	}
	if res.DocErrs != nil {
		fmt.Fprintf(w, "\nskipped Promotion documents:\n")
		for _, line := range strings.Split(res.DocErrs.Error(), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	for _, g := range res.Gates {
		fmt.Fprintf(w, "\npromotion %s (%s → %s, %s; %s)\n  state: %s\n  %s\n", g.Name, g.From, g.To, g.Mode, g.Source, g.State, g.Reason)
		if !g.Since.IsZero() {
			fmt.Fprintf(w, "  since: %s\n", ts(g.Since))
		}
		if !g.Until.IsZero() {
			fmt.Fprintf(w, "  until: %s (in %s)\n", ts(g.Until), time.Until(g.Until).Round(time.Second))
		}
		for _, p := range g.PassedOver {
			fmt.Fprintf(w, "  passed over %s\n", p)
		}
	}
	if rv := res.Revert; rv != nil {
		fmt.Fprintf(w, "\nrevert: %s was recorded degraded in %s (%s)\n", rv.Commit, rv.Cluster, rv.Record)
		switch {
		case rv.Revert != "":
			fmt.Fprintf(w, "  reverted by %s\n", rv.Revert)
		case rv.Err != nil:
			fmt.Fprintf(w, "  error: %v\n", rv.Err)
		default:
			fmt.Fprintf(w, "  %s\n", rv.Reason)
		}
	}
}
