package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// tailLines is how much of a component's log an error shows.
const tailLines = 40

// ComponentError says which part of the environment failed, shows the end
// of its log and what to try, so a failed start can be acted on from the
// test output alone.
type ComponentError struct {
	Component string
	LogPath   string
	Tail      string
	Hint      string
	Err       error
}

func (e *ComponentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", e.Component, e.Err)
	if e.Tail != "" {
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", e.LogPath, strings.TrimRight(e.Tail, "\n"))
		b.WriteString("\n--- end of log ---")
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, "\nhint: %s", e.Hint)
	}
	return b.String()
}

func (e *ComponentError) Unwrap() error { return e.Err }

// ErrBinaryMissing is returned when a tool binary has not been built.
var ErrBinaryMissing = errors.New("binary not built")

// process is one child program of the environment with its log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	waitErr error
}

// startProcess runs bin with args, its output going to dir/<name>.log.
func startProcess(name, bin string, args []string, dir string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, &ComponentError{Component: name, Err: fmt.Errorf("open log: %w", err)}
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = f
	cmd.Stderr = f
	// Its own process group, so a signal to the test's terminal does not
	// reach it before we stop it in order; and killed with its parent, so a
	// crashed test run leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, &ComponentError{Component: name, LogPath: logPath, Err: fmt.Errorf("start %s: %w", bin, err)}
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		if p.waitErr == nil {
			return true, errors.New("exited with status 0")
		}
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop asks the process to end and kills it if it has not within grace.
func (p *process) stop(grace time.Duration) {
	if ok, _ := p.exited(); ok {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// fail wraps err as a ComponentError carrying the tail of the log.
func (p *process) fail(err error, hint string) error {
	return &ComponentError{Component: p.name, LogPath: p.logPath, Tail: tailFile(p.logPath, tailLines), Hint: hint, Err: err}
}

// waitReady polls check until it succeeds, the process exits or timeout passes.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if ok, err := p.exited(); ok {
			return p.fail(fmt.Errorf("exited before it was ready: %v", err), hintFor(p.logPath))
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return p.fail(fmt.Errorf("not ready after %s (last check: %v)", timeout, last),
				"the machine may be overloaded: raise ReadyTimeout, or read the log above for the cause")
		case <-tick.C:
		}
	}
}

// hintFor suggests a next step from what the log says.
func hintFor(logPath string) string {
	b, _ := os.ReadFile(logPath)
	switch {
	case bytes.Contains(b, []byte("address already in use")):
		return "a port it was given is taken by another process: stop it, or let the environment pick free ports"
	case bytes.Contains(b, []byte("permission denied")):
		return "check that the data directory is writable"
	default:
		return "read the log above; `make tools` rebuilds the binaries if one is broken"
	}
}

// tailFile returns the last n lines of the file at path.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxRead = 64 << 10
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-maxRead, 0)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePorts finds n distinct free loopback ports below the kernel's
// ephemeral range. A port the kernel hands out for ":0" is one it also
// hands out for the client side of outgoing connections, and a test
// opens thousands: between this choice and the component's bind, one of
// them could take the port ("address already in use": a flaky start
// under load). Below the ephemeral range only another chooser could,
// and the choice is random.
func freePorts(n int) ([]int, error) {
	lo, hi := 10000, ephemeralStart()
	// Hold every listener until all ports are chosen, so none repeats.
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			return nil, fmt.Errorf("find a free port: none of 1000 tried between %d and %d was free", lo, hi)
		}
		port := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", hostPort(port))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, port)
	}
	return ports, nil
}

// ephemeralStart is the first port of the kernel's ephemeral range
// (32768 unless configured otherwise).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(b)); err == nil && len(f) == 2 {
		if lo, err := strconv.Atoi(f[0]); err == nil && lo > 11000 {
			return lo
		}
	}
	return 32768
}

// FreeAddr is a free loopback address (host:port) for a program a test
// starts with --listen, chosen as freePorts chooses.
func FreeAddr() (string, error) {
	ps, err := freePorts(1)
	if err != nil {
		return "", err
	}
	return hostPort(ps[0]), nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
