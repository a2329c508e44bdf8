package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"driftless.dev/automator/internal/automate"
)

func planCommand() *cobra.Command {
	var c passConfig
	var verbose bool
	cmd := &cobra.Command{
		Use:   "plan [policy...]",
		Short: "Show per policy the chosen tag and why, the exact diff a run would commit, and each promotion gate: what it waits for and since when; push nothing",
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := c.build(cmd.Context())
			if err != nil {
				return err
			}
			res, err := b.auto.Plan(cmd.Context(), args)
			printPlan(cmd.OutOrStdout(), res, verbose)
			// The gates and the revert rule, as a run would see them now;
			// nothing is pushed or recorded.
			gres, gerr := b.gates.Pass(cmd.Context(), true)
			printGates(cmd.OutOrStdout(), gres, gerr)
			return errors.Join(err, gerr)
		},
	}
	c.flags(cmd.Flags())
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every tag passed over and why")
	return cmd
}

func printPlan(w io.Writer, res automate.Result, verbose bool) {
	fmt.Fprintf(w, "base %s\n", res.Base)
	if res.Untrusted != nil {
		fmt.Fprintf(w, "\nrefused: %v\nnothing is read, edited or committed until the head is trusted (signed by a key of --verify-keyring)\n", res.Untrusted)
		return
	}
	if res.PolicyErrs != nil {
		fmt.Fprintf(w, "\nskipped policies:\n")
		for _, line := range strings.Split(res.PolicyErrs.Error(), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	for _, pr := range res.Policies {
		fmt.Fprintf(w, "\npolicy %s (%s)\n", pr.Policy.Key(), pr.Policy.Spec.Image)
		if pr.Err != nil {
			fmt.Fprintf(w, "  error: %v\n", pr.Err)
			continue
		}
		ch := pr.Choice
		fmt.Fprintf(w, "  tags: %d listed, %d allowed\n  current: %s\n  chosen: %s\n  why: %s\n", ch.Considered, ch.Candidates, orNone(ch.Current), orNone(ch.Tag), ch.Reason)
		if pr.Digest != "" {
			fmt.Fprintf(w, "  digest: %s\n", pr.Digest)
		}
		rej := ch.Rejected
		if !verbose && len(rej) > 10 {
			rej = rej[:10]
		}
		for _, r := range rej {
			fmt.Fprintf(w, "  passed over %s: %s\n", r.Tag, r.Reason)
		}
		if len(rej) < len(ch.Rejected) {
			fmt.Fprintf(w, "  ... %d more (-v lists them all)\n", len(ch.Rejected)-len(rej))
		}
	}
	if res.Diff == "" {
		fmt.Fprintf(w, "\nno change: nothing would be committed\n")
		return
	}
	fmt.Fprintf(w, "\ncommit message:\n%s\ndiff:\n%s", indent(res.Message), res.Diff)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}
