package e2e

import (
	"fmt"
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
			// Installed with write(2), as an image layer is unpacked: the
			// linker writes through mmap, which leaves the file in large
			// page-cache folios that inflate the resident size of every
			// process that maps it by 20-25 MiB (measured here), an
			// artefact of how the file was written rather than of the
			// program.
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
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		return err
	}
	return os.Remove(from)
}
