package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// UIOperator is the ServiceAccount whose token logs in to the programs'
// pages: in each cluster, bound to a Role that may view and act on both
// programs (get and update on the synchronizer's status ConfigMap and on
// the automator's Lease, the RBAC docs/ui.md describes) and nothing else.
const UIOperator = "driftless-ui-operator"

// UITokenTTL is how long the minted tokens are valid.
const UITokenTTL = 24 * time.Hour

const uiRBAC = `apiVersion: v1
kind: ServiceAccount
metadata: {name: driftless-ui-operator, namespace: driftless-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: driftless-ui-operator, namespace: driftless-system}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    resourceNames: [driftless]
    verbs: [get, update]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    resourceNames: [driftless-automator]
    verbs: [get, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: driftless-ui-operator, namespace: driftless-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: driftless-ui-operator}
subjects:
  - {kind: ServiceAccount, name: driftless-ui-operator, namespace: driftless-system}
`

// UI is how a person reaches the programs' pages.
type UI struct {
	// URLs of the pages by program ("automator", "sync-dev", "sync-prod"),
	// all on 127.0.0.1: the session cookie is Secure, which browsers
	// keep over plain HTTP only on localhost.
	URLs map[string]string
	// TokenFiles hold, per cluster, a token of UIOperator (a cluster's
	// synchronizer accepts only its own cluster's tokens; the automator
	// runs in dev).
	TokenFiles map[string]string
}

// UIAccess makes what a person needs to log in to the pages: UIOperator
// in each cluster, a token of it (TokenRequest, valid UITokenTTL) in a
// file readable by root only (a token is never printed), and, with the
// programs in Pods, a listener on 127.0.0.1 for each program that
// forwards to its leading Pod.
func (f *Fleet) UIAccess(ctx context.Context) (UI, error) {
	ui := UI{URLs: map[string]string{}, TokenFiles: map[string]string{}}
	rbac := filepath.Join(f.opts.Dir, "ui-rbac.yaml")
	if err := os.WriteFile(rbac, []byte(uiRBAC), 0o644); err != nil {
		return ui, err
	}
	for _, c := range Clusters {
		if out, err := f.Kubectl(ctx, c, "apply", "--server-side", "-f", rbac); err != nil {
			return ui, fmt.Errorf("the UI's ServiceAccount in %s: %w\n%s", c, err, out)
		}
		cfg, err := f.Clusters[c].ServiceAccountConfig(ctx, "driftless-system", UIOperator, UITokenTTL)
		if err != nil {
			return ui, err
		}
		path := filepath.Join(f.opts.Dir, "ui-token-"+c)
		if err := os.WriteFile(path, []byte(cfg.BearerToken), 0o600); err != nil {
			return ui, err
		}
		ui.TokenFiles[c] = path
	}
	for _, name := range []string{"automator", "sync-dev", "sync-prod"} {
		addr := f.listenOf(name)
		if f.opts.InCluster {
			var err error
			if addr, err = f.forward(name); err != nil {
				return ui, err
			}
		}
		ui.URLs[name] = "http://" + addr + "/ui/"
	}
	return ui, nil
}

// forward listens on 127.0.0.1 and passes each connection to the Pod
// that leads program name ("automator", "sync-dev", "sync-prod"), found
// anew for each connection, so the pages follow a handover.
func (f *Fleet) forward(name string) (string, error) {
	c, app, lease := "dev", "driftless-automator", "driftless-automator"
	if name != "automator" {
		c, app, lease = name[len("sync-"):], "driftless-synchronizer", "driftless-synchronizer-driftless"
	}
	cs, err := kubernetes.NewForConfig(f.Clusters[c].Config)
	if err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	f.forwards = append(f.forwards, l)
	f.mu.Unlock()
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				ip := leaderIP(ctx, cs, app, lease)
				cancel()
				if ip == "" {
					return
				}
				out, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), 5*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				var wg sync.WaitGroup
				wg.Go(func() { io.Copy(out, in); out.(*net.TCPConn).CloseWrite() })
				io.Copy(in, out)
				in.(*net.TCPConn).CloseWrite()
				wg.Wait()
			}()
		}
	}()
	return l.Addr().String(), nil
}

// leaderIP is the IP of the Pod of app that holds lease, or of any
// running Pod of app when none does.
func leaderIP(ctx context.Context, cs kubernetes.Interface, app, lease string) string {
	holder := ""
	if l, err := cs.CoordinationV1().Leases("driftless-system").Get(ctx, lease, metav1.GetOptions{}); err == nil && l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	pods, err := cs.CoreV1().Pods("driftless-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + app})
	if err != nil {
		return ""
	}
	other := ""
	for _, p := range pods.Items {
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		if p.Name == holder {
			return p.Status.PodIP
		}
		other = p.Status.PodIP
	}
	return other
}

// FleetView is what the automator's /api/v1/fleet answers, as much of it
// as the demo and the tests read.
type FleetView struct {
	Records      bool   `json:"records"`
	RecordsError string `json:"recordsError"`
	Branches     []struct {
		Name  string   `json:"name"`
		Roles []string `json:"roles"`
		Tip   *struct {
			Hash    string `json:"hash"`
			Subject string `json:"subject"`
		} `json:"tip"`
		Error    string `json:"error"`
		Evidence *struct {
			Clusters []struct {
				Cluster string `json:"cluster"`
				State   string `json:"state"`
				Message string `json:"message"`
				Runs    string `json:"runs"`
			} `json:"clusters"`
			Gates []struct {
				Name   string `json:"name"`
				To     string `json:"to"`
				State  string `json:"state"`
				Reason string `json:"reason"`
				Commit string `json:"commit"`
			} `json:"gates"`
			DryRun bool   `json:"dryRun"`
			Error  string `json:"error"`
		} `json:"evidence"`
	} `json:"branches"`
}

// Fleet reads the automator's fleet (GET /api/v1/fleet) through ui, as
// UIOperator: what its fleet page shows.
func (ui UI) Fleet(ctx context.Context) (FleetView, error) {
	var v FleetView
	token, err := os.ReadFile(ui.TokenFiles["dev"])
	if err != nil {
		return v, err
	}
	u := strings.TrimSuffix(ui.URLs["automator"], "/ui/") + "/api/v1/fleet"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return v, err
	}
	req.Header.Set("Authorization", "Bearer "+string(token))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return v, fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// Says renders the records and gates of the fleet page, one line per
// branch, cluster and gate.
func (v FleetView) Says() string {
	var b strings.Builder
	for _, br := range v.Branches {
		tip := ""
		if br.Tip != nil {
			tip = short(br.Tip.Hash) + " " + br.Tip.Subject
		}
		fmt.Fprintf(&b, "%s  %s\n", br.Name, tip)
		if br.Evidence == nil {
			continue
		}
		for _, c := range br.Evidence.Clusters {
			fmt.Fprintf(&b, "    cluster %-5s %-8s %s\n", c.Cluster, c.State, c.Message)
		}
		for _, g := range br.Evidence.Gates {
			fmt.Fprintf(&b, "    gate %s → %s: %s: %s\n", g.Name, g.To, g.State, g.Reason)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// Healthy says whether the fleet page shows cluster healthy on branch's tip.
func (v FleetView) Healthy(branch, cluster string) bool {
	for _, br := range v.Branches {
		if br.Name != branch || br.Evidence == nil {
			continue
		}
		for _, c := range br.Evidence.Clusters {
			if c.Cluster == cluster && c.State == "healthy" {
				return true
			}
		}
	}
	return false
}
