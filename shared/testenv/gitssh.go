package testenv

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

// SSHAccess is how a client reaches a GitServer over SSH.
type SSHAccess struct {
	// Addr is host:port of the SSH server.
	Addr string
	// KeyFile is a client private key (OpenSSH PEM) the server accepts.
	KeyFile string
	// KnownHosts is a known_hosts file holding the server's host key.
	KnownHosts string
}

// URL returns the ssh:// clone URL of the repository name.
func (a *SSHAccess) URL(name string) string { return "ssh://git@" + a.Addr + "/" + name + ".git" }

// sshServer runs git-upload-pack and git-receive-pack, the programs the
// git CLI runs over SSH, against the GitServer's bare repositories.
type sshServer struct {
	root string
	l    net.Listener
	cfg  *ssh.ServerConfig
	wg   sync.WaitGroup
}

// EnableSSH serves the repositories over SSH too, to one client key it
// generates into dir, and returns how to reach them.
func (g *GitServer) EnableSSH(dir string) (*SSHAccess, error) {
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("git ssh: host key: %w", err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		return nil, fmt.Errorf("git ssh: host key: %w", err)
	}
	clientPub, clientKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("git ssh: client key: %w", err)
	}
	allowed, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		return nil, fmt.Errorf("git ssh: client key: %w", err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), allowed.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("git ssh: listen: %w", err)
	}
	s := &sshServer{root: g.Root, l: l, cfg: cfg}
	g.sshStop = s.stop
	go s.serve()

	block, err := ssh.MarshalPrivateKey(clientKey, "driftless test client")
	if err != nil {
		return nil, fmt.Errorf("git ssh: encode client key: %w", err)
	}
	access := &SSHAccess{Addr: l.Addr().String(), KeyFile: filepath.Join(dir, "id_ed25519"), KnownHosts: filepath.Join(dir, "known_hosts")}
	host, port, _ := net.SplitHostPort(access.Addr)
	known := fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(hostSigner.PublicKey()))
	if err := os.WriteFile(access.KeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("git ssh: %w", err)
	}
	if err := os.WriteFile(access.KnownHosts, []byte(known), 0o600); err != nil {
		return nil, fmt.Errorf("git ssh: %w", err)
	}
	return access, nil
}

func (s *sshServer) stop() {
	s.l.Close()
	s.wg.Wait()
}

func (s *sshServer) serve() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.handle(c) })
	}
}

func (s *sshServer) handle(c net.Conn) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		s.session(ch, chReqs)
	}
}

// session runs the one exec request a git client makes.
func (s *sshServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			_ = req.Reply(false, nil)
			return
		}
		prog, repo, ok := strings.Cut(payload.Command, " ")
		if !ok || (prog != "git-upload-pack" && prog != "git-receive-pack") {
			_ = req.Reply(false, nil)
			return
		}
		repo = strings.Trim(repo, "'\"")
		dir := filepath.Join(s.root, filepath.FromSlash(path.Clean("/"+repo)))
		_ = req.Reply(true, nil)
		cmd := exec.CommandContext(context.Background(), "git", strings.TrimPrefix(prog, "git-"), dir)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				status = uint32(ee.ExitCode())
			}
		}
		b := make([]byte, 4)
		binary.BigEndian.PutUint32(b, status)
		_, _ = ch.SendRequest("exit-status", false, b)
		_ = io.Closer(ch).Close()
		return
	}
}
