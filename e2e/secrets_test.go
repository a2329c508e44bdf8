package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"driftless.dev/e2e/fleet"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
)

// ecrHost is the ECR registry the secrets test's main policy names; the
// automator reaches it through the registry proxy as an HTTP proxy, and
// gets its token from the ECR API stand-in.
const ecrHost = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"

// startStandIn builds and runs the ECR and STS API stand-in
// (automator/internal/ecr/ecrtest, the one stand-in allowed) and returns
// its URL.
func startStandIn(t *testing.T, password string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "standin")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./internal/ecr/ecrtest/standin")
	build.Dir = filepath.Join("..", "automator")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the ECR stand-in: %v\n%s", err, out)
	}
	pwFile := filepath.Join(dir, "password")
	os.WriteFile(pwFile, []byte(password), 0o600)
	cmd := exec.Command(bin, "--password-file", pwFile, "--account", "111122223333", "--access-key-id", "AKIDCHAOS")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the ECR stand-in did not say where it listens: %v", err)
	}
	return strings.TrimSpace(url)
}

// TestSecretsNeverLeak runs the whole loop with one canary as every
// secret: the Git password, the registry password (an ECR token from the
// ECR API, and a pull secret), the AWS secret key and both webhook
// secrets. It makes the loop work (two bumps, applied) and fail (wrong
// webhook secrets, Git and the registry refusing the credentials), then
// reads every log line, the status ConfigMap and its inventory, every
// Event, both programs' metrics and /status, `automator plan` and
// `synchronizer status`, and every commit with its message, notes and
// diff: the canary, raw or base64-encoded, must appear in none of them.
func TestSecretsNeverLeak(t *testing.T) {
	canary := "CANARY-" + randomHex(12)
	standIn := startStandIn(t, canary)
	dockerDir := t.TempDir()
	s := newStand(t, standOptions{canary: canary, auth: true, image: ecrHost + "/" + standRepoPath,
		policyAuth: "  auth:\n    provider: aws\n",
		automator: func(s *stand) ([]string, []string) {
			// The pull secret for the second policy, as a mounted
			// .dockerconfigjson.
			auth := base64.StdEncoding.EncodeToString([]byte("AWS:" + s.canary))
			os.MkdirAll(filepath.Join(dockerDir, "api"), 0o755)
			os.WriteFile(filepath.Join(dockerDir, "api", "config.json"), []byte(`{"auths":{"`+s.regProxy.Host+`":{"auth":"`+auth+`"}}}`), 0o600)
			home := t.TempDir()
			return []string{"--aws", "--ecr-endpoint", standIn, "--insecure-registries", ecrHost, "--docker-config-dir", dockerDir},
				[]string{"AWS_ACCESS_KEY_ID=AKIDCHAOS", "AWS_SECRET_ACCESS_KEY=" + s.canary, "AWS_REGION=eu-west-1",
					"AWS_ENDPOINT_URL_STS=" + standIn, "AWS_EC2_METADATA_DISABLED=true",
					"AWS_CONFIG_FILE=" + filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
					// The ECR host is reached through the registry proxy.
					"HTTP_PROXY=http://" + s.regProxy.Host}
		}})
	ctx := t.Context()
	if _, err := s.waitConverged(ctx, convergeLimit); err != nil {
		t.Fatal(err)
	}
	// A second policy, on the registry's own name, with the pull secret.
	if _, err := s.reg.PushImages(ctx, "team/api", "1.0.0", "1.1.0"); err != nil {
		t.Fatal(err)
	}
	apiImage := s.regProxy.Host + "/team/api"
	s.personCommit(map[string]string{
		"policies/api.yaml": "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: api, namespace: chaos}\nspec:\n  image: " + apiImage +
			"\n  interval: 5s\n  policy:\n    semver: {range: '>=1.0.0'}\n  auth:\n    provider: dockerconfig\n    dockerConfig: api/config.json\n",
		"app/api.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: api\n  namespace: " + s.ns + "\ndata:\n  image: " + apiImage + ":1.0.0 # {\"$imagepolicy\": \"chaos:api\"}\n",
	})
	s.pushTag()
	if err := fleet.Until(ctx, convergeLimit, "the api bump", func() bool {
		out, _ := s.git.Git(ctx, standRepo, "show", "main:app/api.yaml")
		return strings.Contains(out, apiImage+":1.1.0 ")
	}); err != nil {
		t.Fatalf("%v\n%s", err, s.diagnose())
	}
	if _, err := s.waitConverged(ctx, convergeLimit); err != nil {
		t.Fatalf("%v\n%s", err, s.diagnose())
	}
	// Failures with the secrets in play.
	for name, path := range map[string]string{automatorProc: "/hooks/registry", synchronizerProc: "/hooks/git"} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.listen[name]+path, strings.NewReader(`{"ref":"refs/heads/main","events":[]}`))
		req.Header.Set("Authorization", "Bearer "+s.canary+"x")
		req.Header.Set("X-Gitlab-Token", s.canary+"x")
		req.Header.Set("X-Hub-Signature-256", fleet.Sign([]byte(s.canary+"x"), []byte("{}")))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s %s with a wrong secret: %d", name, path, resp.StatusCode)
			}
		}
	}
	// The registry, then Git, refusing the credentials.
	for _, step := range []struct {
		proxies []*testenv.FaultProxy
		seen    []evidence
	}{
		{[]*testenv.FaultProxy{s.regProxy}, []evidence{inLog(automatorProc, "scan failed", "unauthorized")}},
		{[]*testenv.FaultProxy{s.gitA, s.gitS}, []evidence{inLog(automatorProc, "pass failed", "authentication failed"), statusIs("Stalled", "FetchFailed")}},
	} {
		m := mark{log: map[string]int64{automatorProc: s.logSize(automatorProc), synchronizerProc: s.logSize(synchronizerProc)}, at: time.Now()}
		for _, p := range step.proxies {
			p.Set(testenv.Fault{Status: http.StatusUnauthorized})
		}
		s.pushTag()
		s.change()
		for _, ev := range step.seen {
			if err := fleet.Until(ctx, 90*time.Second, ev.where, func() bool { _, ok := ev.see(ctx, s, m); return ok }); err != nil {
				t.Fatalf("refused credentials never seen in the %s\n%s", ev.where, s.diagnose())
			}
		}
		for _, p := range step.proxies {
			p.Set(testenv.Fault{})
		}
		if _, err := s.waitConverged(ctx, convergeLimit); err != nil {
			t.Fatalf("%v\n%s", err, s.diagnose())
		}
	}

	// Everything a person or a tool can read.
	sources := map[string][]byte{}
	for _, name := range []string{automatorProc, synchronizerProc} {
		sources[name+" log"], _ = os.ReadFile(filepath.Join(s.dir, name+".log"))
		sources[name+" /metrics"] = httpBody("http://" + s.listen[name] + "/metrics")
	}
	sources["synchronizer /status"] = httpBody("http://" + s.listen[synchronizerProc] + "/status")
	plan := exec.CommandContext(ctx, programs[automatorProc], append([]string{"plan"}, planArgs(s.args[automatorProc])...)...)
	plan.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir}, s.env[automatorProc]...)
	sources["automator plan"], _ = plan.CombinedOutput()
	if !bytes.Contains(sources["automator plan"], []byte(policyKey)) {
		t.Fatalf("automator plan did not run:\n%s", sources["automator plan"])
	}
	status := exec.CommandContext(ctx, programs[synchronizerProc], "status", "--kubeconfig", filepath.Join(s.dir, "sync.kubeconfig"))
	sources["synchronizer status"], _ = status.CombinedOutput()
	if !bytes.Contains(sources["synchronizer status"], []byte("Ready")) {
		t.Fatalf("synchronizer status did not run:\n%s", sources["synchronizer status"])
	}
	cm, err := s.cs.CoreV1().ConfigMaps(statusNamespace).Get(ctx, "driftless", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sources["status ConfigMap"], _ = json.Marshal(cm)
	for k, v := range cm.BinaryData {
		if zr, err := gzip.NewReader(bytes.NewReader(v)); err == nil {
			sources["status ConfigMap "+k], _ = io.ReadAll(zr)
		}
	}
	events, err := s.cs.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sources["Events"], _ = json.Marshal(events)
	log, err := s.git.Git(ctx, standRepo, "log", "--all", "-p", "--format=%H %an <%ae>%n%B%n%N")
	if err != nil {
		t.Fatal(err)
	}
	sources["commits, messages, notes and diffs"] = []byte(log)

	forms := []string{canary, base64.StdEncoding.EncodeToString([]byte(canary)), base64.StdEncoding.EncodeToString([]byte("AWS:" + canary)),
		base64.URLEncoding.EncodeToString([]byte("AWS:" + canary)), strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(canary)), "=")}
	found, scanned := 0, 0
	for where, b := range sources {
		if len(b) == 0 {
			t.Errorf("nothing read from %s", where)
		}
		scanned += len(b)
		for _, f := range forms {
			if n := bytes.Count(b, []byte(f)); n > 0 {
				found += n
				t.Errorf("the canary (%s) appears %d times in %s", f[:8]+"...", n, where)
			}
		}
	}
	// The check itself works: the secret files hold the canary.
	if tok, _ := os.ReadFile(filepath.Join(s.dir, "git-token")); !bytes.Contains(tok, []byte(canary)) {
		t.Fatal("the canary check finds nothing where the canary is")
	}
	report(t, row{Scenario: "secrets: one canary as Git password, registry password, pull secret, ECR token, AWS secret key, webhook secrets",
		Tried: len(sources), Lost: found, Detail: fmt.Sprintf("%d sources, %d KiB read: logs, status, Events, metrics, /status, plan, commits", len(sources), scanned/1024)})
}

// planArgs are the run flags `automator plan` takes too.
func planArgs(run []string) []string {
	var out []string
	for i := 1; i < len(run); i++ {
		switch run[i] {
		case "--listen", "--webhook-secret-file", "--refresh", "--pass-timeout":
			i++
			continue
		}
		out = append(out, run[i])
	}
	return out
}

func httpBody(url string) []byte {
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// personCommit commits files as the person, on top of whatever was pushed.
func (s *stand) personCommit(files map[string]string) {
	t, ctx := s.t, s.t.Context()
	for attempt := 0; ; attempt++ {
		if _, err := s.person.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		for rel, body := range files {
			p := filepath.Join(s.person.Dir(), rel)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(body), 0o644)
		}
		h, err := s.person.Commit("Add "+strings.Join(keysOf(files), ", "), gitrepo.Signature{Name: personName, Email: "release@example.com"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.person.Push(ctx, "main"); err == nil {
			s.mu.Lock()
			s.commits = append(s.commits, h.String())
			s.mu.Unlock()
			return
		} else if attempt == 10 {
			t.Fatal(err)
		}
	}
}
