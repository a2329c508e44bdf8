package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// programs maps each program to the binary TestMain built.
var programs = map[string]string{}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "driftless-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		for _, p := range []string{"automator", "synchronizer"} {
			out := filepath.Join(dir, p)
			// Built the way the Makefile builds them: each module on its own.
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X driftless.dev/shared/version.Version=e2e", "-o", out+".linked", "./cmd/"+p)
			cmd.Dir = filepath.Join("..", p)
			cmd.Env = append(os.Environ(), "GOWORK=off")
			if b, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", p, err, b)
				return 1
			}
			// Installed the way containerd unpacks an image layer: 32 KiB
			// writes. How a file was written decides the page-cache folio
			// sizes the kernel maps it with, and so the resident size of
			// every process running it: measured here on the same binary,
			// idle, 41 MiB of file pages after 32 KiB writes, 54 MiB as the
			// linker leaves it (mmap), 69 MiB after one 100 MB write.
			if err := install(out+".linked", out); err != nil {
				fmt.Fprintf(os.Stderr, "install %s: %v\n", p, err)
				return 1
			}
			programs[p] = out
		}
		return m.Run()
	}()
	os.Exit(code)
}

func TestProgramsReportVersionAndHelp(t *testing.T) {
	for p, bin := range programs {
		t.Run(p, func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), bin, "--version").CombinedOutput()
			if err != nil || string(out) != p+" e2e\n" {
				t.Fatalf("%s --version = %q (%v)", p, out, err)
			}
			out, err = exec.CommandContext(t.Context(), bin, "--help").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Usage:") {
				t.Fatalf("%s --help = %q (%v)", p, out, err)
			}
			out, err = exec.CommandContext(t.Context(), bin, "--bogus").CombinedOutput()
			if err == nil || !strings.Contains(string(out), "unknown flag: --bogus") {
				t.Fatalf("%s --bogus: exit %v, output %q; want a non-zero exit naming the flag", p, err, out)
			}
		})
	}
}

func install(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, make([]byte, 32<<10)); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return os.Remove(from)
}
