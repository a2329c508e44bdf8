package redact

import (
	"strings"
	"testing"
)

func TestURLs(t *testing.T) {
	cases := map[string]string{
		"clone https://user:s3cret@git.example.com/org/repo.git failed": "clone https://***@git.example.com/org/repo.git failed",
		`Get "https://registry.example.com/v2/x?token=s3cret&x=1": EOF`: `Get "https://registry.example.com/v2/x": EOF`,
		"http://tok:s3cret@127.0.0.1:8080/a and ssh://git@host/repo":    "http://***@127.0.0.1:8080/a and ssh://***@host/repo",
		"no url here":           "no url here",
		"https://host/p#s3cret": "https://host/p",
		"bad %zz url https://u:s3cret@h%zz/x?s3cret":                               "bad %zz url https://***@h%zz/x",
		"list refs of http://127.0.0.1:1234/fleet.git: connection refused":         "list refs of http://127.0.0.1:1234/fleet.git: connection refused",
		"fetch http://sync:s3cret@127.0.0.1:1/a.git main: authentication required": "fetch http://***@127.0.0.1:1/a.git main: authentication required",
	}
	for in, want := range cases {
		got := URLs(in)
		if got != want {
			t.Errorf("URLs(%q)\n got %q\nwant %q", in, got, want)
		}
		if strings.Contains(got, "s3cret") {
			t.Errorf("URLs(%q) leaks: %q", in, got)
		}
	}
}
