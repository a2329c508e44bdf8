package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ClusterOptions configure StartCluster. The zero value is a usable default.
type ClusterOptions struct {
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler, kwok and kwok-stages.yaml. Default: FindBinDir.
	BinDir string
	// Dir keeps data, certificates and logs. Default: a new temporary
	// folder that Stop removes.
	Dir string
	// Nodes is the number of simulated (kwok) nodes. Default 1.
	Nodes int
	// ReadyTimeout bounds the wait for each component. Default 90s.
	ReadyTimeout time.Duration
	// APIServerPort fixes the API server's port. Default: a free one.
	APIServerPort int
	// RealNode adds a real node (kubelet, containerd, runc, CNI bridge,
	// kube-proxy) beside the simulated ones, so Pods run real containers
	// and Services route. It is tainted RealNodeTaint: only Pods that
	// tolerate it run there. The API server then listens on the node's
	// HostIP instead of 127.0.0.1, so Pods reach it. Needs root.
	RealNode bool
}

// Cluster is a running Kubernetes control plane with simulated nodes.
type Cluster struct {
	// Config authenticates as a cluster administrator (system:masters).
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for Config.
	Kubeconfig string
	// Dir holds the cluster's data, certificates and logs.
	Dir string
	// Node is the real node, when ClusterOptions.RealNode asked for one.
	Node *Node

	ca       *authority
	procs    []*process
	api      *process // restarted by StopAPIServer/StartAPIServer
	apiBin   string
	apiArgs  []string
	mu       sync.Mutex
	ownsDir  bool
	stopOnce sync.Once
}

// The simulated nodes carry this annotation; kwok manages only them.
const (
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	kwokNodeValue      = "fake"
)

// StartCluster starts etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok, each on free loopback ports, waits until each is
// ready and the simulated nodes are Ready, and returns the cluster. On error
// everything started so far is stopped; the error names the component and
// shows the tail of its log.
func StartCluster(ctx context.Context, opts ClusterOptions) (_ *Cluster, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 1
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	c := &Cluster{Dir: opts.Dir}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "driftless-cluster-"); err != nil {
			return nil, fmt.Errorf("cluster: make data dir: %w", err)
		}
		c.ownsDir = true
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	bins := map[string]string{}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages.yaml"} {
		if bins[name], err = binPath(opts.BinDir, name); err != nil {
			return nil, err
		}
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort, kcmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	if opts.APIServerPort != 0 {
		apiPort = opts.APIServerPort
	}
	apiHost := "127.0.0.1"
	if opts.RealNode {
		if c.Node, err = allocateNode(c.path("node")); err != nil {
			return nil, err
		}
		if err := c.Node.setupNetwork(ctx); err != nil {
			return nil, err
		}
		apiHost = c.Node.HostIP
	}
	apiAddr := net.JoinHostPort(apiHost, strconv.Itoa(apiPort))
	if err := c.writePKI(apiHost); err != nil {
		return nil, err
	}

	// etcd
	etcd, err := c.start("etcd", bins["etcd"],
		"--name=default", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=http://"+hostPort(etcdPort), "--advertise-client-urls=http://"+hostPort(etcdPort),
		"--listen-peer-urls=http://"+hostPort(peerPort), "--initial-advertise-peer-urls=http://"+hostPort(peerPort),
		"--initial-cluster=default=http://"+hostPort(peerPort),
		"--listen-metrics-urls=", "--log-level=warn", "--quota-backend-bytes=4294967296", "--unsafe-no-fsync")
	if err != nil {
		return nil, err
	}
	if err := etcd.waitReady(ctx, opts.ReadyTimeout, httpOK(http.DefaultClient, "http://"+hostPort(etcdPort)+"/health")); err != nil {
		return nil, err
	}

	// kube-apiserver
	c.apiBin = bins["kube-apiserver"]
	c.apiArgs = []string{"--etcd-servers=http://" + hostPort(etcdPort),
		"--bind-address=" + apiHost, "--advertise-address=" + apiHost, fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir=" + c.path("pki"),
		"--tls-cert-file=" + c.path("pki/apiserver.crt"), "--tls-private-key-file=" + c.path("pki/apiserver.key"),
		"--client-ca-file=" + c.path("pki/ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + c.path("pki/sa.pub"), "--service-account-signing-key-file=" + c.path("pki/sa.key"),
		"--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/16", "--allow-privileged=true",
		"--profiling=false", "--v=1",
		// kubectl logs and exec on a real node: the kubelet is reached at
		// its IP, with the administrator's certificate.
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--kubelet-client-certificate=" + c.path("pki/admin.crt"), "--kubelet-client-key=" + c.path("pki/admin.key")}
	api, err := c.start("kube-apiserver", c.apiBin, c.apiArgs...)
	if err != nil {
		return nil, err
	}
	c.api = api
	c.Config = &rest.Config{
		Host:            "https://" + apiAddr,
		TLSClientConfig: c.tlsConfig("pki/admin.crt", "pki/admin.key"),
		QPS:             200,
		Burst:           400,
	}
	adminHTTP, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return nil, fmt.Errorf("cluster: admin client: %w", err)
	}
	if err := api.waitReady(ctx, opts.ReadyTimeout, httpOK(adminHTTP, c.Config.Host+"/readyz")); err != nil {
		return nil, err
	}
	c.Kubeconfig = c.path("admin.kubeconfig")
	if err := WriteKubeconfig(c.Kubeconfig, c.Config); err != nil {
		return nil, err
	}

	// kube-controller-manager and kube-scheduler serve /healthz to
	// anonymous callers on their secure ports, which is how we know they run.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	kcm, err := c.start("kube-controller-manager", bins["kube-controller-manager"],
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", kcmPort), "--cert-dir="+c.path("kcm"),
		// No pod network and no real nodes: their controllers have nothing to do.
		"--controllers=*,-nodeipam,-nodelifecycle,-serviceaccount-token",
		"--root-ca-file="+c.path("pki/ca.crt"), "--v=1")
	if err != nil {
		return nil, err
	}
	sched, err := c.start("kube-scheduler", bins["kube-scheduler"],
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", schedPort), "--cert-dir="+c.path("scheduler"), "--v=1")
	if err != nil {
		return nil, err
	}
	if err := kcm.waitReady(ctx, opts.ReadyTimeout, httpOK(insecure, fmt.Sprintf("https://%s/healthz", hostPort(kcmPort)))); err != nil {
		return nil, err
	}
	if err := sched.waitReady(ctx, opts.ReadyTimeout, httpOK(insecure, fmt.Sprintf("https://%s/healthz", hostPort(schedPort)))); err != nil {
		return nil, err
	}

	// kwok plays the kubelets of the simulated nodes.
	kwok, err := c.start("kwok", bins["kwok"],
		"--kubeconfig="+c.Kubeconfig, "--config="+bins["kwok-stages.yaml"],
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"="+kwokNodeValue,
		"--server-address="+hostPort(kwokPort))
	if err != nil {
		return nil, err
	}
	if err := kwok.waitReady(ctx, opts.ReadyTimeout, httpOK(http.DefaultClient, "http://"+hostPort(kwokPort)+"/healthz")); err != nil {
		return nil, err
	}
	if err := c.addNodes(ctx, kwok, opts.Nodes, opts.ReadyTimeout); err != nil {
		return nil, err
	}
	if c.Node != nil {
		if err := c.Node.start(ctx, c, opts.BinDir); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// StopAPIServer stops the kube-apiserver alone (etcd keeps the data), so
// a test can see what its clients do while it is away.
func (c *Cluster) StopAPIServer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.api.stop(10 * time.Second)
}

// StartAPIServer starts the kube-apiserver again on the same port after
// StopAPIServer and waits until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	api, err := c.start("kube-apiserver", c.apiBin, c.apiArgs...)
	if err != nil {
		return err
	}
	c.api = api
	adminHTTP, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return err
	}
	return api.waitReady(ctx, 90*time.Second, httpOK(adminHTTP, c.Config.Host+"/readyz"))
}

func (c *Cluster) path(rel string) string { return filepath.Join(c.Dir, rel) }

func (c *Cluster) start(name, bin string, args ...string) (*process, error) {
	p, err := startProcess(name, bin, args, c.Dir)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// writePKI writes the CA, the API server's serving certificate, the
// administrator's client certificate and the ServiceAccount signing keys.
func (c *Cluster) writePKI(apiHost string) error {
	ca, err := newAuthority("driftless-testenv-ca")
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.ca = ca
	srvCert, srvKey, err := ca.issue("kube-apiserver", nil, apiHost, "127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "10.0.0.1")
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	admCert, admKey, err := ca.issue("admin", []string{"system:masters"})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	saPub, saKey, err := serviceAccountKeys()
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := os.MkdirAll(c.path("pki"), 0o700); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	for name, data := range map[string][]byte{
		"ca.crt": ca.certPEM, "apiserver.crt": srvCert, "apiserver.key": srvKey,
		"admin.crt": admCert, "admin.key": admKey, "sa.pub": saPub, "sa.key": saKey,
	} {
		if err := os.WriteFile(c.path("pki/"+name), data, 0o600); err != nil {
			return fmt.Errorf("cluster: write %s: %w", name, err)
		}
	}
	return nil
}

func (c *Cluster) tlsConfig(certFile, keyFile string) rest.TLSClientConfig {
	cert, _ := os.ReadFile(c.path(certFile))
	key, _ := os.ReadFile(c.path(keyFile))
	return rest.TLSClientConfig{CAData: c.ca.certPEM, CertData: cert, KeyData: key}
}

// addNodes registers n simulated nodes and waits until kwok has made them
// Ready and schedulable.
func (c *Cluster) addNodes(ctx context.Context, kwok *process, n int, timeout time.Duration) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("cluster: client: %w", err)
	}
	for i := range n {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        fmt.Sprintf("kwok-node-%d", i),
				Annotations: map[string]string{kwokNodeAnnotation: kwokNodeValue},
				Labels:      map[string]string{"type": "kwok", "kubernetes.io/os": "linux", "kubernetes.io/hostname": fmt.Sprintf("kwok-node-%d", i)},
			},
			Status: corev1.NodeStatus{
				Allocatable: nodeResources(),
				Capacity:    nodeResources(),
			},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return kwok.fail(fmt.Errorf("create node %s: %w", node.Name, err), "")
		}
	}
	return kwok.waitReady(ctx, timeout, func(ctx context.Context) error {
		for i := range n {
			name := fmt.Sprintf("kwok-node-%d", i)
			node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !nodeReady(node) {
				return fmt.Errorf("node %s not Ready", name)
			}
			// The admission plugin marks a new node not-ready; its lifecycle
			// controller, which would lift that, is off here.
			if kept := untainted(node.Spec.Taints); len(kept) != len(node.Spec.Taints) {
				node.Spec.Taints = kept
				if _, err := cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
					return fmt.Errorf("remove not-ready taint of %s: %w", name, err)
				}
				return fmt.Errorf("node %s was tainted", name)
			}
		}
		return nil
	})
}

func nodeResources() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func untainted(ts []corev1.Taint) []corev1.Taint {
	var kept []corev1.Taint
	for _, t := range ts {
		if t.Key != corev1.TaintNodeNotReady && t.Key != corev1.TaintNodeUnreachable {
			kept = append(kept, t)
		}
	}
	return kept
}

// UserConfig returns a client configuration that authenticates as an
// ordinary user name in groups, with a client certificate the cluster's CA
// signed. It has no permissions until RBAC grants them.
func (c *Cluster) UserConfig(name string, groups ...string) (*rest.Config, error) {
	cert, key, err := c.ca.issue(name, groups)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.TLSClientConfig = rest.TLSClientConfig{CAData: c.ca.certPEM, CertData: cert, KeyData: key}
	return cfg, nil
}

// ServiceAccountConfig returns a client configuration that authenticates as
// the ServiceAccount namespace/name with a token from the TokenRequest API,
// as a Pod running under it would.
func (c *Cluster) ServiceAccountConfig(ctx context.Context, namespace, name string, ttl time.Duration) (*rest.Config, error) {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("service account %s/%s: client: %w", namespace, name, err)
	}
	secs := int64(ttl / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("service account %s/%s: request token: %w", namespace, name, err)
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.TLSClientConfig = rest.TLSClientConfig{CAData: c.ca.certPEM}
	cfg.BearerToken = tr.Status.Token
	return cfg, nil
}

// LogTails returns the end of every component's log, for a failed test.
func (c *Cluster) LogTails() string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- last lines of %s ---\n%s\n", p.logPath, tailFile(p.logPath, tailLines))
	}
	if c.Node != nil {
		b.WriteString(c.Node.LogTails())
		b.WriteString(c.Node.ContainerLogs(tailLines))
	}
	return b.String()
}

// Stop ends every component, newest first, and removes the data folder if
// StartCluster made it. It is safe to call more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		if c.Node != nil {
			c.Node.Stop()
		}
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].stop(10 * time.Second)
		}
		if c.ownsDir {
			os.RemoveAll(c.Dir)
		}
	})
}

// WriteKubeconfig writes a kubeconfig file for cfg at path.
func WriteKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["driftless"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["driftless"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["driftless"] = &clientcmdapi.Context{Cluster: "driftless", AuthInfo: "driftless"}
	kc.CurrentContext = "driftless"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// httpOK returns a readiness check that passes on a 200 from url.
func httpOK(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	}
}

// insecureTLS is for the health endpoints of kube-controller-manager and
// kube-scheduler only, which serve self-signed certificates.
func insecureTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // health probe of a local test process
}
