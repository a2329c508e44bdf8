package envflags_test

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"driftless.dev/shared/envflags"
)

func TestFallbackAndPrecedence(t *testing.T) {
	env := map[string]string{"DRIFTLESS_GIT_URL": "https://from-env", "DRIFTLESS_BRANCH": "dev", "DRIFTLESS_COUNT": "many"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var url, branch string
	var count int
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }, PersistentPreRunE: envflags.Hook(lookup)}
	cmd.Flags().StringVar(&url, "git-url", "", "")
	cmd.Flags().StringVar(&branch, "branch", "main", "")
	cmd.Flags().IntVar(&count, "count", 1, "")
	cmd.SetArgs([]string{"--branch", "prod", "--count", "2"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if url != "https://from-env" || branch != "prod" || count != 2 {
		t.Fatalf("url %q branch %q count %d: the flag must win, the variable fill the rest", url, branch, count)
	}
	cmd.SetArgs(nil)
	cmd.Flags().Lookup("count").Changed = false
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "DRIFTLESS_COUNT") {
		t.Fatalf("a bad value from the environment: %v, want the variable named", err)
	}
	if envflags.Key("git-ssh-key") != "DRIFTLESS_GIT_SSH_KEY" {
		t.Fatal(envflags.Key("git-ssh-key"))
	}
}
