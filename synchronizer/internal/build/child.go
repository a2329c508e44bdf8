package build

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"

	"driftless.dev/synchronizer/internal/checkoutfs"
)

// Why krusty runs in a child process.
//
// Kustomize v0.21 gives its loader no way to be told "no network": any
// http(s) path in any field (patches, transformers, generators' files,
// replacements, openapi, ...) is fetched with an http.Client built on
// http.DefaultTransport, and any git-like path is cloned by running the
// git binary found on $PATH, into os.TempDir. krusty.Kustomizer.Run takes
// only a file system; the loader, its client and its cloner are internal.
// Checking field names would be a list that the next Kustomize release (or
// a field nested in a plugin configuration) outgrows.
//
// So the one thing Kustomize can reach is taken away from the whole
// process that runs it: the synchronizer starts itself again (its own
// executable, argv[0] = childName) with an empty environment (no PATH, so
// no git; TMPDIR unusable, so nothing can be written to a temporary
// folder) and, before reading its request, replaces http.DefaultTransport
// with one that refuses every request. That process reads the checkout
// only through checkoutfs (an os.Root: nothing outside the checkout, no
// .git). It cannot fetch, whatever field names a URL, and it ends with the
// build: a build that does not finish within its time limit is killed,
// which a goroutine could not be. Kustomize's process-wide OpenAPI schema
// (set by `openapi:`) dies with it too.
//
// The price is a process start (about 10 ms) for each build krusty makes;
// the common kustomizations take the in-process fast path (simple.go).

// childName is argv[0] of a build process. Package build's init sees it
// and runs the build instead of the program, so this works from any
// binary that links the package (the synchronizer, and every test binary).
const childName = "driftless-kustomize-build"

func init() {
	// Not configuration: the protocol between a build and the process it
	// starts. Nothing else sets this argv[0].
	if len(os.Args) == 1 && os.Args[0] == childName {
		os.Exit(serveChild(os.Stdin, os.Stdout))
	}
}

// request is what a build process is asked.
type request struct {
	Root    string            `json:"root"`
	Path    string            `json:"path"`
	Virtual map[string][]byte `json:"virtual,omitempty"`
	Legacy  bool              `json:"legacy,omitempty"`
}

// response is what it answers: the objects, or an error for people.
type response struct {
	Objects []json.RawMessage `json:"objects,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// errRemote is what the refusing transport answers, so messages can name
// the field that holds the URL.
var errRemote = errors.New("remote files are not read: only files inside the checkout")

// refusing is the build process's only HTTP transport.
type refusing struct {
	mu   sync.Mutex
	urls []string
}

func (r *refusing) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.URL.String())
	r.mu.Unlock()
	return nil, errRemote
}

func (r *refusing) refused() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.urls...)
}

// serveChild is a build process: it cuts itself off, reads one request,
// builds it with krusty and writes one response.
func serveChild(in io.Reader, out io.Writer) int {
	transport := &refusing{}
	http.DefaultTransport = transport
	http.DefaultClient = &http.Client{Transport: transport}
	// The parent starts us with an empty environment; this makes the
	// process safe even when started some other way.
	os.Clearenv()
	os.Setenv("TMPDIR", noTempDir)
	// Kustomize recursing without end should fail in seconds, not after
	// a gigabyte of stack.
	debug.SetMaxStack(256 << 20)
	// Kustomize's transformers copy every resource's YAML tree again and
	// again (kyaml's CopyYNode is half of what a render allocates), so
	// at the default GOGC the heap peaks at twice what is live for little
	// reason in a process that lives one render: collecting at +25 %
	// lowers the peak of a 2 MB vendor install from 73 to 55 MiB
	// (BenchmarkRenderVendor; the kustomize CLI: 64–73 MiB) for some 15 %
	// more CPU in this process (0.62 → 0.70 s there).
	debug.SetGCPercent(25)

	var req request
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "bad request:", err)
		return 2
	}
	resp := krustyBuild(req, transport)
	if err := json.NewEncoder(out).Encode(resp); err != nil {
		return 2
	}
	return 0
}

// noTempDir cannot be created: a file under /dev/null. Nothing in a build
// process may write a temporary file.
const noTempDir = "/dev/null/driftless-build-has-no-temporary-folder"

func krustyBuild(req request, transport *refusing) (resp response) {
	fsys, err := checkoutfs.Open(req.Root)
	if err != nil {
		return response{Error: "open the checkout: " + checkoutfs.Message(err.Error())}
	}
	defer fsys.Close()
	for p, data := range req.Virtual {
		fsys.AddVirtual(p, data)
	}
	defer func() {
		// Kustomize panics on some malformed input (Flux recovers the
		// same way); the value is not shown, it may hold input.
		if p := recover(); p != nil {
			resp = response{Error: fmt.Sprintf("kustomize build %s failed unexpectedly (a malformed object or field?)", req.Path)}
		}
	}()
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	opts.PluginConfig = types.DisabledPluginConfig()
	opts.PluginConfig.HelmConfig.Enabled = false
	if req.Legacy {
		opts.Reorder = krusty.ReorderOptionLegacy
	}
	rm, err := krusty.MakeKustomizer(opts).Run(fsys, checkoutfs.Abs(req.Path))
	if err != nil {
		return response{Error: explainKustomize(err, req.Path, trail{fsys.Reads(), transport.refused(), fsys.Refusals()})}
	}
	for _, r := range rm.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			return response{Error: explain(fmt.Errorf("kustomize build %s: %s: %w", req.Path, r.CurId(), err), fsys.Reads())}
		}
		resp.Objects = append(resp.Objects, b)
	}
	return resp
}

// runChild builds req in a build process, within ctx.
func runChild(ctx context.Context, req request) (response, error) {
	self, err := os.Executable()
	if err != nil {
		return response{}, fmt.Errorf("find the synchronizer's executable to run the build: %w", err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return response{}, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Args = []string{childName}
	cmd.Env = []string{"PATH=", "HOME=/dev/null", "TMPDIR=" + noTempDir}
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(body)
	var stdout bytes.Buffer
	stderr := &head{max: 4096}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return response{}, context.Cause(ctx)
	}
	var resp response
	if derr := json.Unmarshal(stdout.Bytes(), &resp); derr != nil || err != nil {
		// A build process that died without answering: say how, but not
		// with its output, which may quote input.
		return response{}, fmt.Errorf("kustomize build %s crashed (%v%s)", req.Path, err, fatal(stderr.String()))
	}
	return resp, nil
}

// fatal picks the Go runtime's one-line reason out of a crashed build
// process's output (stack overflow, out of memory).
func fatal(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "fatal error: ") || strings.HasPrefix(line, "runtime: ") {
			if len(line) > 120 {
				line = line[:120]
			}
			return ": " + line
		}
	}
	return ""
}

// head keeps the first max bytes written to it: the Go runtime names a
// crash on its first line.
type head struct {
	max int
	buf []byte
}

func (h *head) Write(p []byte) (int, error) {
	if room := h.max - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (h *head) String() string { return string(h.buf) }
