package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/shared/testenv"
)

// tenantResources are what a tenant synchronizer reads and writes: the
// API server's request counts over them are its requests (the cluster's
// other clients leave them alone once the Deployments, scaled to zero,
// have their ReplicaSets).
var tenantResources = []string{"configmaps", "services", "deployments", "events", "secrets", "serviceaccounts"}

// BenchmarkTenants runs 50 tenants of 100 objects each (80 ConfigMaps, 10
// Services, 10 Deployments), each its own repository and namespace,
// applying as the namespace's ServiceAccount (impersonation), two ways:
//   - shared: one `synchronizer run --tenants` process serving all 50. Per
//     tenant: the process's resident size (VmRSS, after every tenant's
//     first pass and watches, idle) divided by 50, and likewise its PSS;
//   - separate: 50 `synchronizer run --namespace` processes. Per tenant:
//     the mean of their RSS and of their PSS (smaps_rollup; PSS splits
//     the binary's shared pages among the 50).
//
// Both: the API requests per second all tenants make together while idle,
// counted by the API server (apiserver_request_total over the tenants'
// resources, every verb) over an idle window; and the time from start to
// every tenant applied. Processes run as deployed (GOMEMLIMIT 256Mi).
func BenchmarkTenants(b *testing.B) {
	const tenants, objects = 50, 100
	window := pick(15*time.Second, 30*time.Second)
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Nodes: 1})
	s := newSyncSetup(b, cluster)
	ctx := b.Context()
	body := strings.ReplaceAll(objectsN("TENANT", objects), ", namespace: TENANT}", "}")
	for i := range tenants {
		s.seed(b, fmt.Sprintf("tenant-%02d", i), map[string]string{"deploy/objects.yaml": body})
	}
	// One cold round per mode and iteration: fresh namespaces.
	setup := func(prefix string) []string {
		var nss []string
		for i := range tenants {
			ns := fmt.Sprintf("%s-%02d", prefix, i)
			nss = append(nss, ns)
			if _, err := s.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			if _, err := s.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			all := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
			if _, err := s.cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}, Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"configmaps", "services"}, Verbs: all},
				{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: all},
			}}, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			if _, err := s.cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "deployer"},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deployer", Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		return nss
	}
	common := func(listen string) []string {
		return []string{"run", "--kubeconfig", cluster.Kubeconfig, "--listen", listen, "--interval", "1h", "--log-format", "json", "--log-level", "warn"}
	}
	env := []string{"GOMEMLIMIT=" + deployedMemLimit}
	// idle counts the tenants' requests over the window, once every
	// tenant is applied and its watches have listed.
	idle := func() float64 {
		before := requestSeries(b, s.cs)
		time.Sleep(window) // the measurement itself: requests over a fixed idle window
		n := 0
		for series, v := range requestSeries(b, s.cs) {
			if d := v - before[series]; d > 0 && slices.ContainsFunc(tenantResources, func(r string) bool { return strings.Contains(series, `resource="`+r+`"`) }) {
				b.Logf("while idle: %d × %s", d, series) // what a non-zero figure is made of
				n += d
			}
		}
		return float64(n) / window.Seconds()
	}
	fig := figures{}
	for it := 0; b.Loop(); it++ {
		// Shared: one process.
		b.StopTimer()
		nss := setup("shared-" + strconv.Itoa(it))
		var spec strings.Builder
		spec.WriteString("tenants:\n")
		for i, ns := range nss {
			fmt.Fprintf(&spec, "- {name: t%02d, namespace: %s, repoURL: %q, branch: main, path: deploy, serviceAccount: deployer, gitUsername: sync, gitPasswordFile: %q, webhookSecretFile: %q}\n",
				i, ns, s.git.RepoURL(fmt.Sprintf("tenant-%02d", i)), filepath.Join(s.dir, "git-token"), filepath.Join(s.dir, "hook-secret"))
		}
		file := filepath.Join(b.TempDir(), "tenants.yaml")
		if err := os.WriteFile(file, []byte(spec.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		listen := freeAddr(b)
		t0 := time.Now()
		p := startEnv(b, env, "synchronizer", append(common(listen), "--tenants", file)...)
		until(b, 5*time.Minute, "every tenant applied", func() bool {
			for i := range nss {
				if getStatusAt(b, listen, fmt.Sprintf("/status/t%02d", i)).Status.Objects != objects {
					return false
				}
			}
			return true
		})
		fig.add("shared-all-applied-s", time.Since(t0).Seconds())
		settle(b, s.cs)
		fig.add("shared-idle-req-per-s", idle())
		pid := p.cmd.Process.Pid
		fig.add("shared-process-RSS-MiB", procStatus(pid, "VmRSS"))
		fig.add("shared-process-peak-RSS-MiB", procStatus(pid, "VmHWM"))
		fig.add("shared-RSS-per-tenant-MiB", procStatus(pid, "VmRSS")/tenants)
		fig.add("shared-PSS-per-tenant-MiB", smapsRollup(pid, "Pss")/tenants)
		p.stop()

		// Separate: one process per tenant.
		b.StopTimer()
		nss = setup("separate-" + strconv.Itoa(it))
		b.StartTimer()
		var procs []*proc
		var listens []string
		t0 = time.Now()
		for i, ns := range nss {
			l := freeAddr(b)
			listens = append(listens, l)
			args := append(common(l), "--repo-url", s.git.RepoURL(fmt.Sprintf("tenant-%02d", i)), "--branch", "main", "--path", "deploy",
				"--git-username", "sync", "--git-password-file", filepath.Join(s.dir, "git-token"), "--webhook-secret-file", filepath.Join(s.dir, "hook-secret"),
				"--namespace", ns, "--service-account", "deployer", "--ui=false")
			procs = append(procs, startEnv(b, env, "synchronizer", args...))
		}
		until(b, 5*time.Minute, "every tenant applied", func() bool {
			for _, l := range listens {
				if getStatus(b, l).Status.Objects != objects {
					return false
				}
			}
			return true
		})
		fig.add("separate-all-applied-s", time.Since(t0).Seconds())
		until(b, time.Minute, "every tenant's watches listed", func() bool {
			for _, l := range listens {
				if !watchesListed(b, l) {
					return false
				}
			}
			return true
		})
		settle(b, s.cs)
		fig.add("separate-idle-req-per-s", idle())
		var rss, pss, peak float64
		for _, p := range procs {
			rss += procStatus(p.cmd.Process.Pid, "VmRSS")
			pss += smapsRollup(p.cmd.Process.Pid, "Pss")
			peak = max(peak, procStatus(p.cmd.Process.Pid, "VmHWM"))
		}
		fig.add("separate-RSS-each-MiB", rss/tenants)
		fig.add("separate-PSS-each-MiB", pss/tenants)
		fig.add("separate-peak-RSS-max-MiB", peak)
		for _, p := range procs {
			p.stop()
		}
	}
	fig.report(b)
}

// getStatusAt reads a synchronizer's status at path (/status/<tenant>).
func getStatusAt(t testing.TB, listen, path string) syncStatus {
	t.Helper()
	var st syncStatus
	resp, err := httpGetJSON("http://"+listen+path, &st)
	if err != nil || resp != 200 {
		return syncStatus{}
	}
	return st
}

// settle waits until the tenants' resources see no request for 3 s in a
// row: every first pass, watch list and Deployment controller write done.
func settle(t testing.TB, cs kubernetes.Interface) {
	t.Helper()
	last := -1
	err := wait.PollUntilContextTimeout(t.Context(), 3*time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
		n := apiRequests(t, cs, tenantResources...)
		done := n == last
		last = n
		return done, nil
	})
	if err != nil {
		t.Fatalf("the API server's requests over %v never settled: %v", tenantResources, err)
	}
}
