package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// binDirName is where `make tools` puts the binaries, relative to the
// repository root.
const binDirName = ".tools/bin"

// FindBinDir returns the `.tools/bin` folder of the repository that holds
// the working directory, looking upward from it, so a test finds the
// binaries from whichever module folder `go test` runs in.
func FindBinDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", binDirName, err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, binDirName)
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return "", &ComponentError{Component: "tools", Err: fmt.Errorf("%w: no %s above %s", ErrBinaryMissing, binDirName, wd),
		Hint: "run `make tools` at the repository root to build the test environment's binaries"}
}

// binPath resolves a binary name in dir, or in the found bin dir when dir
// is empty.
func binPath(dir, name string) (string, error) {
	if dir == "" {
		d, err := FindBinDir()
		if err != nil {
			return "", err
		}
		dir = d
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return "", &ComponentError{Component: name, Err: fmt.Errorf("%w: %s", ErrBinaryMissing, p),
			Hint: "run `make tools` at the repository root to build the test environment's binaries"}
	}
	return p, nil
}
