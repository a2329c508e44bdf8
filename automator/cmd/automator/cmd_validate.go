package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"driftless.dev/automator/internal/checkout"
	"driftless.dev/automator/internal/policy"
	"driftless.dev/automator/internal/promote"
)

func validateCommand() *cobra.Command {
	var dir, policyPath, manifestPath string
	var files []string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the policies, Promotion documents and markers of a checkout, offline; exit non-zero listing every finding with file and line",
		RunE: func(cmd *cobra.Command, _ []string) error {
			tree, err := checkout.Open(dir)
			if err != nil {
				return fmt.Errorf("--dir: %w", err)
			}
			defer tree.Close()
			findings, warnings := policy.Validate(tree, policyPath, manifestPath, files)
			findings = append(findings, validatePromotions(tree, policyPath)...)
			for _, f := range findings {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			for _, w := range warnings {
				fmt.Fprintln(cmd.OutOrStdout(), "warning:", w)
			}
			if len(findings) > 0 {
				return &exitError{code: 2, msg: fmt.Sprintf("%d finding(s)", len(findings))}
			}
			fmt.Fprintln(cmd.OutOrStdout(), "policies, promotions and markers are valid")
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dir, "dir", ".", "the checkout to check")
	fs.StringVar(&policyPath, "policy-path", ".", "folder in the checkout searched for ImagePolicy documents")
	fs.StringVar(&manifestPath, "manifest-path", "", "folder in the checkout whose markers are checked (default: all of it)")
	fs.StringSliceVar(&files, "policy-file", nil, "policy files outside the checkout (repeatable)")
	return cmd
}

// validatePromotions checks the Promotion documents beside the policies.
func validatePromotions(tree *checkout.Tree, policyPath string) []error {
	if policyPath == "" {
		return nil
	}
	var files []policy.File
	var findings []error
	isYAML := func(name string) bool { return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") }
	err := tree.Walk(policyPath, isYAML, func(rel string, data []byte) error {
		if promote.Declares(data) {
			files = append(files, policy.File{Name: rel, Data: data})
		}
		return nil
	}, func(err error) { findings = append(findings, fmt.Errorf("read promotions: %w", err)) })
	if err != nil {
		findings = append(findings, fmt.Errorf("read promotions in %s: %w", policyPath, err))
	}
	_, err = promote.Load(files)
	return append(findings, policy.Flatten(err)...)
}
