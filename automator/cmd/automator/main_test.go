package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersionAndHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "automator dev\n" {
		t.Fatalf("--version printed %q", got)
	}
	out.Reset()
	if err := run(t.Context(), []string{"--help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), "automator") {
		t.Fatalf("--help printed %q", out.String())
	}
	if err := run(t.Context(), []string{"--no-such-flag"}, &out, &out); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("unknown flag: got %v, want an error naming it", err)
	}
}
