package testenv_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"driftless.dev/shared/imagebuild"
	"driftless.dev/shared/testenv"
)

// TestRealNode: a cluster with a real node beside a kwok node runs a Pod
// under the restricted profile (non-root, read-only root, no capabilities)
// from an image built here and pulled from the test registry (its program
// finds the image's CA bundle); the Pod
// serves HTTP to the host, a Service routes to it through kube-proxy, its
// log is readable through the API server; and stopping the cluster leaves
// no namespace, link, mount, process or cgroup behind.
func TestRealNode(t *testing.T) {
	// Registered first, so it runs last: after the cluster has stopped.
	var node *testenv.Node
	t.Cleanup(func() {
		if node != nil {
			checkNodeCleanedUp(t, node)
		}
	})
	t0 := time.Now()
	c := testenv.NewCluster(t, testenv.ClusterOptions{RealNode: true})
	node = c.Node
	t.Logf("cluster with a real node Ready in %s", time.Since(t0).Round(10*time.Millisecond))
	ctx := t.Context()
	cs := kubernetes.NewForConfigOrDie(c.Config)

	// The image: a static program on an empty base, pushed to a registry
	// the node (and its Pods) reach on the host's side of the node's link.
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Address: node.HostIP})
	if err := node.TrustRegistry(reg.Host); err != nil {
		t.Fatal(err)
	}
	image := pushHello(t, reg)
	t.Logf("image built and pushed at %s", time.Since(t0).Round(10*time.Millisecond))

	ns := c.Namespace(t)
	if _, err := cs.CoreV1().Namespaces().Patch(ctx, ns, "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "hello"}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Labels: labels},
		Spec: corev1.PodSpec{
			NodeSelector:                 map[string]string{"kubernetes.io/hostname": testenv.RealNodeName},
			Tolerations:                  []corev1.Toleration{testenv.RealNodeToleration()},
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "hello", Image: image,
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt(8080)}},
					PeriodSeconds: 1},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	t0 = time.Now()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create a restricted Pod: %v", err)
	}
	var podIP string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				podIP = p.Status.PodIP
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		p, _ := cs.CoreV1().Pods(ns).Get(ctx, "hello", metav1.GetOptions{})
		t.Fatalf("the Pod never became Ready: %v\nstatus: %+v", err, p.Status)
	}

	t.Logf("Pod Ready in %s", time.Since(t0).Round(10*time.Millisecond))

	// The host reaches the Pod at its IP.
	body := get(t, http.DefaultClient, "http://"+net.JoinHostPort(podIP, "8080")+"/")
	var uid, roots int
	if _, err := fmt.Sscanf(body, "hello from hello uid %d roots %d", &uid, &roots); err != nil || uid != 65532 {
		t.Fatalf("the Pod answered %q (%v)", body, err)
	}
	// The image's CA bundle is where Go looks: the program has roots to
	// verify TLS with, though the image has nothing else.
	if roots < 100 {
		t.Fatalf("the program in the image found %d CA certificates, want the bundle's (over 100)", roots)
	}
	// Its log comes through the API server from the kubelet.
	logs, err := cs.CoreV1().Pods(ns).GetLogs("hello", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || !strings.Contains(string(logs), "listening on :8080") {
		t.Fatalf("Pod log = %q (%v)", logs, err)
	}

	// A Service routes to it, through kube-proxy's rules on the node.
	svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hello"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	onNode := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: node.Dial, DisableKeepAlives: true}}
	svcURL := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/"
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		resp, err := onNode.Get(svcURL)
		if err != nil {
			last = err
			return false, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.HasPrefix(string(b), "hello from hello"), nil
	})
	if err != nil {
		slices, _ := cs.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{})
		nat, _ := node.Exec(context.Background(), "iptables-save", "-t", "nat")
		t.Fatalf("the Service %s never routed to the Pod: %v (last: %v)\nEndpointSlices: %+v\nthe node's nat table:\n%s", svcURL, err, last, slices, nat)
	}

	t.Logf("Service routed in %s", time.Since(t0).Round(10*time.Millisecond))
}

// checkNodeCleanedUp: stopping the cluster removed everything the node
// made: its network namespace (and with it the bridge, veths and iptables
// rules), the host's link, mounts, processes and cgroups.
func checkNodeCleanedUp(t *testing.T, node *testenv.Node) {
	slot := strings.Split(node.HostIP, ".")[2]
	for _, p := range []string{"/run/netns/driftless-node-" + slot, "/sys/class/net/dlh" + slot, "/sys/fs/cgroup/memory/driftless-node-" + slot, "/sys/fs/cgroup/pids/driftless-node-" + slot} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is left after Stop (%v)", p, err)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), node.Dir) {
		t.Errorf("mounts under %s are left after Stop", node.Dir)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, _ := os.ReadFile(p); strings.Contains(string(b), "/run/driftless-testenv/node-"+slot+"/") {
			t.Errorf("process %s (%q) is left after Stop", p, b)
		}
	}
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// pushHello builds testdata/hello into an image for this machine and
// pushes it, returning its reference by digest.
func pushHello(t *testing.T, reg *testenv.Registry) string {
	t.Helper()
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	bin := filepath.Join(t.TempDir(), "hello")
	if err := imagebuild.GoBuild(t.Context(), ".", "./testdata/hello", p, bin, ""); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	img, err := imagebuild.Image(imagebuild.Spec{Name: "hello", CABundle: ca, Created: time.Unix(0, 0)}, imagebuild.Binary{Platform: p, Path: bin})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(reg.Host+"/test/hello:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, reg.RemoteOptions(t.Context())...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return fmt.Sprintf("%s@%s", ref.Context(), d)
}
