package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"golang.org/x/sys/unix"

	"driftless.dev/shared/imagebuild"
)

// A real node is a kubelet, containerd (with runc and the CNI bridge) and
// kube-proxy, all in a network namespace of their own, so that each node
// is a separate host as far as networking goes: its iptables rules, its
// Pod bridge and its ports are its own, and deleting the namespace removes
// them all. Debian's containerd, runc and containernetworking-plugins
// provide the runtime; the kubelet and kube-proxy come from `make tools`.
//
// Addresses, for slot N (one slot per running real node on the machine,
// held with a lock file so parallel test processes never share one):
//
//	10.250.N.1   the host's end of the node's veth: the API server (and,
//	             when a test asks, the registry and Git server) listen here
//	10.250.N.2   the node (kubelet, kube-proxy)
//	10.251.N.0/24 the node's Pods, on the bridge cni0 inside the namespace
//
// The node namespace routes only to 10.250.0.0/16 (the hosts' side) and its
// Pods; the host routes the Pod range to the node. The host does not
// forward (ip_forward stays as it is, off on these machines), so no Pod
// traffic leaves the machine.
const (
	// RealNodeName is the real node's name in its cluster.
	RealNodeName = "real-node"
	// RealNodeTaint keeps Pods off the real node unless they tolerate it:
	// Pods with made-up images belong on the kwok nodes.
	RealNodeTaint = "driftless.dev/real-node"
	// SandboxImage is the pause image the node's containerd uses, built
	// here from shared/cmd/pause and imported (there is no internet).
	SandboxImage = "localhost/driftless/pause:testenv"

	nodeRunDir    = "/run/driftless-testenv"
	maxNodeSlots  = 64
	serviceRange  = "10.0.0.0/16"
	cniBinDir     = "/usr/lib/cni"
	nodeReadyWait = 2 * time.Minute
)

// RealNodeToleration lets a Pod run on the real node.
func RealNodeToleration() corev1.Toleration {
	return corev1.Toleration{Key: RealNodeTaint, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
}

// Node is a real node of a cluster.
type Node struct {
	// Name is the Node object's name.
	Name string
	// HostIP is the host's address on the node's link: servers that Pods
	// must reach (a registry, a Git server) listen here.
	HostIP string
	// IP is the node's address (kubelet, NodePorts).
	IP string
	// PodCIDR is the range the node's Pods get addresses from.
	PodCIDR string
	// Dir holds the node's state and logs.
	Dir string

	slot     int
	lock     *os.File
	netns    string
	sock     string
	procs    []*process
	mu       sync.Mutex
	stopOnce sync.Once
}

func (n *Node) hostVeth() string { return fmt.Sprintf("dlh%d", n.slot) }
func (n *Node) cgroupRoot() string {
	return fmt.Sprintf("/driftless-node-%d", n.slot)
}

// allocateNode takes a free slot and clears whatever a killed run left in it.
func allocateNode(dir string) (*Node, error) {
	if err := os.MkdirAll(nodeRunDir, 0o755); err != nil {
		return nil, fmt.Errorf("real node: %w", err)
	}
	for slot := range maxNodeSlots {
		f, err := os.OpenFile(filepath.Join(nodeRunDir, fmt.Sprintf("node-%d.lock", slot)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("real node: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		n := &Node{
			Name: RealNodeName, slot: slot, lock: f, Dir: dir,
			HostIP:  fmt.Sprintf("10.250.%d.1", slot),
			IP:      fmt.Sprintf("10.250.%d.2", slot),
			PodCIDR: fmt.Sprintf("10.251.%d.0/24", slot),
			netns:   fmt.Sprintf("driftless-node-%d", slot),
			sock:    filepath.Join(nodeRunDir, fmt.Sprintf("node-%d", slot), "containerd.sock"),
		}
		cleanupNodeSlot(slot, "")
		return n, nil
	}
	return nil, &ComponentError{Component: "real node", Err: fmt.Errorf("all %d node slots are taken", maxNodeSlots),
		Hint: "stop other test environments (`make env-down`)"}
}

// setupNetwork makes the node's namespace and the link to it.
func (n *Node) setupNetwork(ctx context.Context) error {
	node := "dln" + strconv.Itoa(n.slot)
	steps := [][]string{
		{"ip", "netns", "add", n.netns},
		{"ip", "link", "add", n.hostVeth(), "type", "veth", "peer", "name", node},
		{"ip", "link", "set", node, "netns", n.netns},
		{"ip", "addr", "add", n.HostIP + "/24", "dev", n.hostVeth()},
		{"ip", "link", "set", n.hostVeth(), "up"},
		{"ip", "-n", n.netns, "link", "set", "lo", "up"},
		{"ip", "-n", n.netns, "link", "set", node, "name", "eth0"},
		{"ip", "-n", n.netns, "addr", "add", n.IP + "/24", "dev", "eth0"},
		{"ip", "-n", n.netns, "link", "set", "eth0", "up"},
		{"ip", "-n", n.netns, "route", "add", "10.250.0.0/16", "via", n.HostIP},
		// Service IPs need a route for a process on the node to connect at
		// all; kube-proxy's rules rewrite them to Pod IPs before they leave,
		// and the host would drop (never forward) any that were not.
		{"ip", "-n", n.netns, "route", "add", serviceRange, "via", n.HostIP},
		{"ip", "route", "add", n.PodCIDR, "via", n.IP, "dev", n.hostVeth()},
		{"ip", "netns", "exec", n.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		{"ip", "netns", "exec", n.netns, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			return &ComponentError{Component: "real node", Err: fmt.Errorf("%s: %w: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out))),
				Hint: "a real node needs root and the ip command (Debian's iproute2)"}
		}
	}
	return nil
}

// start runs the node's containerd, kubelet and kube-proxy against the
// cluster c, and waits until the Node is Ready and schedulable.
func (n *Node) start(ctx context.Context, c *Cluster, binDir string) error {
	for _, tool := range []string{"containerd", "ctr", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return &ComponentError{Component: "real node", Err: fmt.Errorf("%w: %s", ErrBinaryMissing, tool),
				Hint: "run `make tools`: it installs Debian's containerd, runc and containernetworking-plugins"}
		}
	}
	bins := map[string]string{}
	for _, b := range []string{"kubelet", "kube-proxy", "pause"} {
		p, err := binPath(binDir, b)
		if err != nil {
			return err
		}
		bins[b] = p
	}
	if err := os.MkdirAll(filepath.Dir(n.sock), 0o755); err != nil {
		return fmt.Errorf("real node: %w", err)
	}
	if err := n.writeConfig(c); err != nil {
		return err
	}
	if err := n.makeCgroupRoot(); err != nil {
		return err
	}
	containerd, err := n.run("containerd", "containerd", "--config", n.path("containerd/config.toml"))
	if err != nil {
		return err
	}
	if err := containerd.waitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		return exec.CommandContext(ctx, "ctr", "--address", n.sock, "version").Run()
	}); err != nil {
		return err
	}
	if err := n.importPause(ctx, bins["pause"]); err != nil {
		return containerd.fail(err, "")
	}
	kubelet, err := n.run("kubelet", bins["kubelet"],
		"--config="+n.path("kubelet/config.yaml"), "--kubeconfig="+c.Kubeconfig,
		"--hostname-override="+n.Name, "--node-ip="+n.IP, "--root-dir="+n.path("kubelet/root"),
		"--cert-dir="+n.path("kubelet/pki"),
		"--register-with-taints="+RealNodeTaint+"=true:NoSchedule", "--v=1")
	if err != nil {
		return err
	}
	// --iptables-min-sync-period=0s: with the default (1s), kube-proxy
	// v1.36.3 here sometimes never synced again after an EndpointSlice
	// arrived during a sync (seen in about one run in four: the Service
	// kept its no-endpoints REJECT rule for minutes); with 0 it has not
	// happened in 16 runs. --v=2 logs each sync, for the next time.
	if _, err := n.run("kube-proxy", bins["kube-proxy"],
		"--kubeconfig="+c.Kubeconfig, "--hostname-override="+n.Name, "--proxy-mode=iptables",
		"--cluster-cidr="+n.PodCIDR, "--conntrack-max-per-core=0", "--iptables-min-sync-period=0s",
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256", "--v=2"); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	return kubelet.waitReady(ctx, nodeReadyWait, func(ctx context.Context) error {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !nodeReady(node) {
			return fmt.Errorf("node %s not Ready", n.Name)
		}
		// No node lifecycle controller runs to lift the not-ready taint.
		if kept := untainted(node.Spec.Taints); len(kept) != len(node.Spec.Taints) {
			node.Spec.Taints = kept
			if _, err := cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("remove not-ready taint of %s: %w", n.Name, err)
			}
			return fmt.Errorf("node %s was tainted", n.Name)
		}
		return nil
	})
}

func (n *Node) path(rel string) string { return filepath.Join(n.Dir, rel) }

// run starts a program of the node inside its network namespace (and only
// that: it shares the host's mounts, as the kubelet and containerd must).
func (n *Node) run(name, bin string, args ...string) (*process, error) {
	p, err := startProcess(name, "nsenter", append([]string{"--net=/run/netns/" + n.netns, "--", bin}, args...), n.Dir)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	return p, nil
}

// makeCgroupRoot creates the node's cgroup in every hierarchy, which the
// kubelet requires to exist; a new cpuset starts with no CPUs and no
// memory nodes, so they are copied from the root.
func (n *Node) makeCgroupRoot() error {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, root := range roots {
		if st, err := os.Stat(root); err != nil || !st.IsDir() {
			continue
		}
		dir := root + n.cgroupRoot()
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return &ComponentError{Component: "real node", Err: fmt.Errorf("make cgroup %s: %w", dir, err)}
		}
		if filepath.Base(root) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(root, f))
				if err != nil {
					return fmt.Errorf("real node: %w", err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("real node: %w", err)
				}
			}
		}
	}
	return nil
}

// writeConfig writes containerd's, the CNI network's and the kubelet's
// configuration, and the kubelet's serving certificate.
func (n *Node) writeConfig(c *Cluster) error {
	cert, key, err := c.ca.issue("system:node:"+n.Name, []string{"system:nodes"}, n.IP)
	if err != nil {
		return fmt.Errorf("real node: %w", err)
	}
	cd := n.path("containerd")
	files := map[string]string{
		"containerd/config.toml": fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # This VM refuses a negative oom_score_adj, and the sandbox asks for -998.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state folder, not /var/run/netns: cleanup finds them.
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc, not crun: crun refuses the hybrid cgroup hierarchy.
        BinaryName = "runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, filepath.Join(cd, "root"), filepath.Join(cd, "state"), n.sock, n.sock+".ttrpc", filepath.Join(cd, "opt"),
			SandboxImage, cniBinDir, filepath.Join(cd, "net.d"), filepath.Join(cd, "certs.d")),
		"containerd/net.d/10-driftless.conflist": fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "driftless-node-%d",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.slot, filepath.Join(cd, "ipam"), n.PodCIDR),
		"kubelet/config.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The hierarchy here is cgroup v1 (hybrid); the kubelet refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
# Its own cgroup root, so two nodes on one machine never clean up each other's Pods.
cgroupRoot: %q
failSwapOn: false
containerRuntimeEndpoint: unix://%s
address: %q
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %q
tlsPrivateKeyFile: %q
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
maxPods: 40
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
podLogsDir: %q
`, n.cgroupRoot(), n.sock, n.IP, n.path("kubelet/pki/kubelet.crt"), n.path("kubelet/pki/kubelet.key"), c.path("pki/ca.crt"), n.path("pod-logs")),
		"kubelet/pki/kubelet.crt": string(cert),
		"kubelet/pki/kubelet.key": string(key),
	}
	for rel, body := range files {
		p := n.path(rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("real node: %w", err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			return fmt.Errorf("real node: write %s: %w", rel, err)
		}
	}
	return os.MkdirAll(filepath.Join(cd, "certs.d"), 0o755)
}

// importPause makes the sandbox image from the pause binary and imports it
// into containerd, so no Pod needs a registry to start.
func (n *Node) importPause(ctx context.Context, bin string) error {
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	spec := imagebuild.Spec{Name: "pause", CABundle: ca, Version: "testenv", Created: time.Unix(0, 0)}
	img, err := imagebuild.Image(spec, imagebuild.Binary{Platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, Path: bin})
	if err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	ref, err := name.NewTag(SandboxImage)
	if err != nil {
		return err
	}
	tarPath := n.path("pause.tar")
	if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	out, err := exec.CommandContext(ctx, "ctr", "--address", n.sock, "-n", "k8s.io", "images", "import", "--snapshotter", "overlayfs", tarPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("import the pause image: %w: %s", err, out)
	}
	return nil
}

// TrustRegistry lets the node pull from the plain-HTTP registry at host
// (host:port), as the test environment's registries serve.
func (n *Node) TrustRegistry(host string) error {
	dir := filepath.Join(n.path("containerd/certs.d"), host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("trust registry %s: %w", host, err)
	}
	body := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+host, "http://"+host)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(body), 0o644); err != nil {
		return fmt.Errorf("trust registry %s: %w", host, err)
	}
	return nil
}

// Dial connects from inside the node's network namespace, as a process on
// the node would: Service (cluster) IPs route there, through kube-proxy.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// A socket belongs to the namespace of the thread that made it;
		// this thread enters the node's namespace and is thrown away after.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + n.netns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := setns(int(f.Fd())); err != nil {
			ch <- result{nil, fmt.Errorf("enter the node's network namespace: %w", err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
		// The thread stays locked and exits with the goroutine, so no other
		// goroutine ever runs in the node's namespace.
	}()
	r := <-ch
	return r.c, r.err
}

func setns(fd int) error { return unix.Setns(fd, unix.CLONE_NEWNET) }

// Exec runs a command inside the node's network namespace (iptables-save,
// ip route, ...) and returns its output, for a test's diagnostics.
func (n *Node) Exec(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.netns, name}, args...)...).CombinedOutput()
	return string(out), err
}

// LogTails returns the end of the node's logs.
func (n *Node) LogTails() string {
	var b strings.Builder
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.procs {
		fmt.Fprintf(&b, "--- last lines of %s ---\n%s\n", p.logPath, tailFile(p.logPath, tailLines))
	}
	return b.String()
}

// ContainerLogs returns the end of every container log file on the node
// (the kubelet keeps them in its pod log folder), for a failed test.
func (n *Node) ContainerLogs(lines int) string {
	var b strings.Builder
	var files []string
	_ = filepath.WalkDir(n.path("pod-logs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".log") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	for _, f := range files {
		fmt.Fprintf(&b, "--- %s ---\n%s\n", f, tailFile(f, lines))
	}
	return b.String()
}

// Stop ends the node and removes everything it made: containers and their
// processes, mounts, cgroups, the network namespace (with its bridge,
// veths and iptables rules) and the host's route and link.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.mu.Lock()
		procs := slices.Clone(n.procs)
		n.mu.Unlock()
		// kubelet and kube-proxy first, so nothing restarts containers.
		for i := len(procs) - 1; i >= 0; i-- {
			if procs[i].name != "containerd" {
				procs[i].stop(10 * time.Second)
			}
		}
		cleanupNodeSlot(n.slot, n.Dir)
		// containerd's state is thrown away: no need to wait for a clean exit.
		for _, p := range procs {
			p.stop(time.Second)
		}
		cleanupNodeSlot(n.slot, n.Dir)
		if n.lock != nil {
			n.lock.Close()
		}
	})
}

// CleanupStaleNodes removes what killed test runs left of their real nodes
// (slots whose lock no process holds), for `make env-down`.
func CleanupStaleNodes() {
	for slot := range maxNodeSlots {
		f, err := os.OpenFile(filepath.Join(nodeRunDir, fmt.Sprintf("node-%d.lock", slot)), os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			cleanupNodeSlot(slot, "")
		}
		f.Close()
	}
}

// cleanupNodeSlot kills the slot's containers, shims and containerd,
// unmounts what they mounted, removes their cgroups, the namespace and the
// host's link. dir, when known, is the node's folder, removed last.
func cleanupNodeSlot(slot int, dir string) {
	netns := fmt.Sprintf("driftless-node-%d", slot)
	sock := filepath.Join(nodeRunDir, fmt.Sprintf("node-%d", slot), "containerd.sock")
	cgroup := fmt.Sprintf("driftless-node-%d", slot)

	// Container processes: everything in the node's cgroups.
	for range 3 {
		killed := 0
		_ = filepath.WalkDir("/sys/fs/cgroup/pids/"+cgroup, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					killed++
				}
			}
			return nil
		})
		if killed == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond) // let the kernel reap them before cgroups are removed
	}
	// Shims and containerd of this node: their command lines name its socket.
	for _, pid := range pidsWithArg(sock) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// Mounts: the containers' root file systems, the Pods' volumes and
	// network namespaces, all under the node's folders.
	prefixes := []string{filepath.Join(nodeRunDir, fmt.Sprintf("node-%d", slot)) + "/"}
	if dir != "" {
		prefixes = append(prefixes, dir+"/")
	}
	for _, m := range mountsUnder(prefixes, netns) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	// cgroups, deepest first, in every hierarchy.
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + cgroup)
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
	// The namespace takes its bridge, veths and iptables rules with it;
	// the host's end of the link and its route go with the veth.
	_ = exec.Command("ip", "netns", "del", netns).Run()
	_ = exec.Command("ip", "link", "del", fmt.Sprintf("dlh%d", slot)).Run()
	_ = os.RemoveAll(filepath.Join(nodeRunDir, fmt.Sprintf("node-%d", slot)))
	if dir != "" {
		_ = os.RemoveAll(filepath.Join(dir, "containerd"))
		_ = os.RemoveAll(filepath.Join(dir, "kubelet"))
		_ = os.RemoveAll(filepath.Join(dir, "pod-logs"))
	}
}

// pidsWithArg returns the processes one of whose arguments is arg.
func pidsWithArg(arg string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(b), "\x00"), arg) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder lists mount points under any of prefixes (and the node's
// network namespace file), deepest first.
func mountsUnder(prefixes []string, netns string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == "/run/netns/"+netns || mp == "/var/run/netns/"+netns {
			out = append(out, mp)
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(mp+"/", p) {
				out = append(out, mp)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
