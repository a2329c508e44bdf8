package testenv

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"driftless.dev/shared/redact"
)

// GitServerOptions configure StartGitServer. The zero value is an
// anonymous server on a free port.
type GitServerOptions struct {
	// Dir holds the bare repositories. Default: a new temporary folder
	// that Stop removes.
	Dir string
	// Auth, when set, requires these credentials for every request.
	Auth *BasicAuth
	// Address is the IP to listen on. Default 127.0.0.1; a real node's
	// HostIP makes the server reachable from its Pods.
	Address string
}

// GitServer serves bare repositories over Git's smart HTTP protocol with
// the real `git http-backend`, run as CGI.
type GitServer struct {
	// URL is the base URL; a repository is at URL + "/" + name.
	URL string
	// Root holds the bare repositories.
	Root string
	// Auth holds the credentials when the server requires them.
	Auth *BasicAuth

	// OnPush, when set, is called after every successful push over HTTP
	// with the repository's name, as a Git host sends a push webhook.
	OnPush func(repo string)

	srv      *http.Server
	sshStop  func()
	ownsDir  bool
	stopOnce sync.Once
}

// StartGitServer starts a smart-HTTP Git server on a free loopback port.
func StartGitServer(ctx context.Context, opts GitServerOptions) (_ *GitServer, err error) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		return nil, &ComponentError{Component: "git-server", Err: fmt.Errorf("git not found: %w", err),
			Hint: "install git (`make tools` does, with apt-get)"}
	}
	out, err := exec.CommandContext(ctx, gitBin, "--exec-path").Output()
	if err != nil {
		return nil, &ComponentError{Component: "git-server", Err: fmt.Errorf("git --exec-path: %w", err)}
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return nil, &ComponentError{Component: "git-server", Err: fmt.Errorf("git-http-backend: %w", err),
			Hint: "install Debian's git package, which ships git-http-backend"}
	}
	g := &GitServer{Root: opts.Dir, Auth: opts.Auth}
	if g.Root == "" {
		if g.Root, err = os.MkdirTemp("", "driftless-git-"); err != nil {
			return nil, fmt.Errorf("git-server: make root dir: %w", err)
		}
		g.ownsDir = true
	}
	addr := opts.Address
	if addr == "" {
		addr = "127.0.0.1"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return nil, &ComponentError{Component: "git-server", Err: fmt.Errorf("listen: %w", err)}
	}
	g.URL = "http://" + l.Addr().String()
	g.srv = &http.Server{Handler: g.handler(backend), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = g.srv.Serve(l) }()
	return g, nil
}

func (g *GitServer) handler(backend string) http.Handler {
	env := []string{"GIT_PROJECT_ROOT=" + g.Root, "GIT_HTTP_EXPORT_ALL=1"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := &cgi.Handler{Path: backend, Env: env, InheritEnv: []string{"PATH", "HOME"}}
		if g.Auth != nil {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(g.Auth.Username)) != 1 ||
				subtle.ConstantTimeCompare([]byte(p), []byte(g.Auth.Password)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="driftless-testenv"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			// http-backend allows a push from an authenticated user.
			h.Env = append(append([]string{}, env...), "REMOTE_USER="+u)
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack") && g.OnPush != nil {
			rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
			h.ServeHTTP(rec, r)
			if rec.code == http.StatusOK {
				repo := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/git-receive-pack"), ".git")
				go g.OnPush(repo)
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// RepoURL returns the clone URL of the repository name.
func (g *GitServer) RepoURL(name string) string { return g.URL + "/" + name + ".git" }

func (g *GitServer) repoDir(name string) string { return filepath.Join(g.Root, name+".git") }

// CreateRepo makes an empty bare repository whose default branch is
// branch, open to pushes over HTTP, and returns its clone URL.
func (g *GitServer) CreateRepo(ctx context.Context, name, branch string) (string, error) {
	dir := g.repoDir(name)
	if _, err := os.Stat(dir); err == nil {
		return "", fmt.Errorf("create repository %s: already exists", name)
	}
	if err := runGit(ctx, "", "init", "--bare", "--initial-branch="+branch, dir); err != nil {
		return "", fmt.Errorf("create repository %s: %w", name, err)
	}
	if err := runGit(ctx, dir, "config", "http.receivepack", "true"); err != nil {
		return "", fmt.Errorf("create repository %s: %w", name, err)
	}
	return g.RepoURL(name), nil
}

// Seed commits the contents of src as one commit on branch of the
// repository name, creating the repository if needed, pushes it through the
// server, and returns the commit hash.
func (g *GitServer) Seed(ctx context.Context, name, branch, src, message string) (string, error) {
	if _, err := os.Stat(g.repoDir(name)); errors.Is(err, os.ErrNotExist) {
		if _, err := g.CreateRepo(ctx, name, branch); err != nil {
			return "", err
		}
	}
	work, err := os.MkdirTemp("", "driftless-seed-")
	if err != nil {
		return "", fmt.Errorf("seed %s: %w", name, err)
	}
	defer os.RemoveAll(work)
	if err := os.CopyFS(work, os.DirFS(src)); err != nil {
		return "", fmt.Errorf("seed %s: copy %s: %w", name, src, err)
	}
	steps := [][]string{
		{"init", "--initial-branch=" + branch},
		{"add", "--all"},
		{"commit", "--quiet", "-m", message},
		{"push", "--quiet", g.authedURL(name), "HEAD:refs/heads/" + branch},
	}
	for _, s := range steps {
		if err := runGit(ctx, work, s...); err != nil {
			return "", fmt.Errorf("seed %s: %w", name, err)
		}
	}
	return g.Head(ctx, name, branch)
}

// Head returns the commit that branch of repository name points at, read
// from the bare repository itself.
func (g *GitServer) Head(ctx context.Context, name, branch string) (string, error) {
	out, err := gitOutput(ctx, g.repoDir(name), "rev-parse", "--verify", "refs/heads/"+branch)
	if err != nil {
		return "", fmt.Errorf("head of %s %s: %w", name, branch, err)
	}
	return strings.TrimSpace(out), nil
}

// Git runs a git command inside the bare repository name and returns its
// output, for assertions on history (`log`, `show`, `rev-list`).
func (g *GitServer) Git(ctx context.Context, name string, args ...string) (string, error) {
	return gitOutput(ctx, g.repoDir(name), args...)
}

// authedURL is RepoURL with the credentials in it, for the git CLI.
func (g *GitServer) authedURL(name string) string {
	u := g.RepoURL(name)
	if g.Auth == nil {
		return u
	}
	return strings.Replace(u, "http://", "http://"+g.Auth.Username+":"+g.Auth.Password+"@", 1)
}

// Stop closes the server and removes its folder if StartGitServer made it.
func (g *GitServer) Stop() {
	g.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.srv.Shutdown(ctx)
		if g.sshStop != nil {
			g.sshStop()
		}
		if g.ownsDir {
			os.RemoveAll(g.Root)
		}
	})
}

func runGit(ctx context.Context, dir string, args ...string) error {
	_, err := gitOutput(ctx, dir, args...)
	return err
}

func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	// A developer's own git configuration must not change what tests see.
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Driftless Test", "GIT_AUTHOR_EMAIL=test@driftless.dev",
		"GIT_COMMITTER_NAME=Driftless Test", "GIT_COMMITTER_EMAIL=test@driftless.dev")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		// URLs with credentials are never put in the message.
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, redact.URLs(strings.TrimSpace(stderr.String())))
	}
	return string(out), nil
}
