package scaler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/podcell/podcell/scaler"
)

// ownedNetworks lists the networks labelled with owner.
func ownedNetworks(t *testing.T, rt *scaler.Podman, owner string) []scaler.NetworkInfo {
	t.Helper()
	list, err := rt.ListNetworks(context.Background())
	if err != nil {
		t.Fatalf("list networks: %v", err)
	}
	var out []scaler.NetworkInfo
	for _, n := range list {
		if n.Labels[scaler.LabelOwner] == owner {
			out = append(out, n)
		}
	}
	return out
}

// dialResult is what the hello image's /dial answers.
type dialResult struct {
	OK  bool    `json:"ok"`
	Err string  `json:"err"`
	MS  float64 `json:"ms"`
}

// dialFrom has the instance at from open a TCP connection to addr.
func dialFrom(t *testing.T, from, addr string) dialResult {
	t.Helper()
	_, body := get(t, from, "/dial?timeout=5s&addr="+url.QueryEscape(addr))
	var r dialResult
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/dial answered %q: %v", body, err)
	}
	return r
}

// fenced checks that a dial from inside an instance failed, and at once:
// a dropped SYN would make a tenant's probe hang instead.
func fenced(t *testing.T, what string, r dialResult) {
	t.Helper()
	if r.OK {
		t.Errorf("%s: connected; want it refused or unreachable", what)
	} else if r.MS > 500 {
		t.Errorf("%s: failed after %.0f ms (%s); want it to fail at once", what, r.MS, r.Err)
	} else {
		t.Logf("%s: %s after %.1f ms", what, r.Err, r.MS)
	}
}

// TestNetworkSandbox runs two services on rootful Podman and attacks one from
// the other: from inside A's instance, B's instance address (listed by the
// admin API), the cloud metadata address, and a bridge that is neither
// podcell's nor Podman's (the host's address on it and a guest behind it)
// must fail at once, while the host (the gateway) reaches both instances
// and A still reaches the outside world, one router hop away, through
// NAT. A Podman network of someone else's, with no container on it yet
// (no bridge, no host route), is fenced off too. Each service has its own
// isolated, labelled network, each instance a rate on both ends of its
// link, and a removed service's network is gone.
func TestNetworkSandbox(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	outside, seen := outsideWorld(t)
	brHost, brGuest := foreignBridge(t)
	_, foreignNet, _ := net.ParseCIDR("10.99.213.0/24")
	foreign := "podcelltest-foreign-" + e.owner
	if _, err := e.rt.CreateNetwork(ctx, scaler.NetworkSpec{Name: foreign, Subnet: foreignNet}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rt.RemoveNetwork(context.Background(), foreign) })
	s := e.scaler(scaler.Options{BandwidthPerCoreMbit: 100})
	defer closeScaler(t, s)
	a, err := s.Apply(e.config("neta"))
	if err != nil {
		t.Fatal(err)
	}
	bcfg := e.config("netb")
	bcfg.BandwidthMbit = 40
	b, err := s.Apply(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	lease := func(svc *scaler.Service) string {
		l, err := svc.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		return l.Addr
	}
	aAddr, bAddr := lease(a), lease(b)

	// The gateway (this host) reaches both.
	for _, addr := range []string{aAddr, bAddr} {
		if code, body := get(t, addr, "/"); code != 200 {
			t.Fatalf("GET %s: %d %s", addr, code, body)
		}
	}
	// A cannot reach B, nor the metadata service, nor the foreign bridge.
	fenced(t, "A to B's instance "+bAddr, dialFrom(t, aAddr, bAddr))
	fenced(t, "A to 169.254.169.254:80", dialFrom(t, aAddr, "169.254.169.254:80"))
	fenced(t, "A to the host on a foreign bridge "+brHost, dialFrom(t, aAddr, brHost))
	fenced(t, "A to a guest on a foreign bridge "+brGuest, dialFrom(t, aAddr, brGuest))
	for _, i := range a.Snapshot().Instances {
		if info, err := e.rt.Inspect(ctx, i.ID); err == nil && i.State == "ready" {
			fencedRoute(t, info.Pid, foreignNet)
		}
	}
	// A reaches the outside world, forwarded and masqueraded by the host.
	if r := dialFrom(t, aAddr, outside); !r.OK {
		t.Errorf("A to the outside world (%s): %s; egress must stay", outside, r.Err)
	} else {
		select {
		case from := <-seen:
			if !strings.HasPrefix(from, "198.18.0.1:") {
				t.Errorf("the outside world saw A's connection come from %s, want the host's 198.18.0.1 (masqueraded)", from)
			}
			t.Logf("A to the outside world %s: connected in %.1f ms, seen from %s", outside, r.MS, from)
		case <-time.After(5 * time.Second):
			t.Errorf("A connected to the outside world %s, but its listener accepted nothing", outside)
		}
	}

	// Each service on its own isolated network, labelled as ours.
	nets := ownedNetworks(t, e.rt, e.owner)
	if len(nets) != 2 {
		t.Fatalf("networks of owner %s: %v, want one per service", e.owner, nets)
	}
	// Each instance shaped on the host in both directions, at its tier's
	// rate: 256 MB at 100 Mbit/s per core is 14.5 Mbit/s; B set 40.
	ifbs := map[string]string{}
	for _, c := range []struct {
		svc  *scaler.Service
		mbit float64
	}{{a, 100 * 256.0 / 1769}, {b, 40}} {
		snap := c.svc.Snapshot()
		var in scaler.InstanceNet
		id := ""
		for _, i := range snap.Instances {
			if i.State == "ready" {
				in, id = i.Net, i.ID
			}
		}
		if in.Network != s.NetworkName(snap.Name) || fmt.Sprintf("%.2f", in.RateMbit) != fmt.Sprintf("%.2f", c.mbit) {
			t.Errorf("%s: instance network %+v, want network %s at %.2f Mbit/s", snap.Name, in, s.NetworkName(snap.Name), c.mbit)
		}
		ifbs[snap.Name] = checkHostShaped(t, e.rt, snap.Name, id, c.mbit)
		t.Logf("%s: %s", snap.Name, in.Shaping)
	}

	// A removed service's network is gone once its instances are.
	if err := s.Remove(ctx, "netb"); err != nil {
		t.Fatal(err)
	}
	nets = ownedNetworks(t, e.rt, e.owner)
	if len(nets) != 1 || nets[0].Labels[scaler.LabelService] != "neta" {
		t.Errorf("networks after removing netb: %v, want neta's only", nets)
	}
	linkGone(t, "after removing netb", ifbs["netb"])
}

// checkHostShaped checks that an instance is shaped on the host, in both
// directions, at mbit: the host end of its veth carries a tbf (to the
// instance), and its ingress redirects every packet to an IFB device that
// carries one (from the instance). Inside the container nothing is
// shaped. It returns the IFB's name.
func checkHostShaped(t *testing.T, rt *scaler.Podman, name, id string, mbit float64) string {
	t.Helper()
	_, h := instanceNetlink(t, rt, id)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if qs, _ := h.QdiscList(eth0); hasTbf(qs, 0) {
		t.Errorf("%s: the container's eth0 has a tbf %v; the rate belongs on the host", name, qs)
	}
	veth, err := netlink.LinkByIndex(eth0.Attrs().ParentIndex)
	if err != nil {
		t.Fatalf("%s: the host end of eth0: %v", name, err)
	}
	if qs, _ := netlink.QdiscList(veth); !hasTbf(qs, mbit) {
		t.Errorf("%s: qdiscs on the host's %s: %v, want a tbf at %.2f Mbit/s (to the instance)", name, veth.Attrs().Name, qs, mbit)
	}
	filters, err := netlink.FilterList(veth, netlink.MakeHandle(0xffff, 0))
	if err != nil || len(filters) == 0 {
		t.Fatalf("%s: no ingress filter on the host's %s (%v): what the instance sends is not redirected to be shaped", name, veth.Attrs().Name, err)
	}
	u32, ok := filters[0].(*netlink.U32)
	if !ok || u32.RedirIndex == 0 {
		t.Fatalf("%s: ingress filter on %s is %+v, want a u32 that redirects to an IFB", name, veth.Attrs().Name, filters[0])
	}
	ifb, err := netlink.LinkByIndex(u32.RedirIndex)
	if err != nil || ifb.Type() != "ifb" || ifb.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("%s: the ingress of %s redirects to link %d (%v): want an IFB that is up", name, veth.Attrs().Name, u32.RedirIndex, err)
	}
	if qs, _ := netlink.QdiscList(ifb); !hasTbf(qs, mbit) {
		t.Errorf("%s: qdiscs on %s: %v, want a tbf at %.2f Mbit/s (from the instance)", name, ifb.Attrs().Name, qs, mbit)
	}
	return ifb.Attrs().Name
}

// hasTbf says whether qs has a tbf at mbit (any rate if 0).
func hasTbf(qs []netlink.Qdisc, mbit float64) bool {
	for _, q := range qs {
		if tbf, ok := q.(*netlink.Tbf); ok && (mbit == 0 || math.Abs(float64(tbf.Rate*8)/1e6-mbit) < mbit/100) {
			return true
		}
	}
	return false
}

// ownedIFBs lists the host's IFB devices that podcell made for owner's
// instances (their alias names the owner).
func ownedIFBs(t *testing.T, owner string) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Type() == "ifb" && strings.HasPrefix(l.Attrs().Alias, "podcell owner="+owner+" ") {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// linkGone checks that the host has no link named name.
func linkGone(t *testing.T, what, name string) {
	t.Helper()
	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("%s: the host still has %s", what, name)
	}
}

// TestPreparedStandby: once a service was used, its standby is initialized
// before any request (network namespace, address, runc's process waiting
// to exec the app, which has not run) and already fenced and shaped; the
// next cold start starts that very container, fenced and shaped.
func TestPreparedStandby(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.scaler(scaler.Options{BandwidthPerCoreMbit: 100})
	defer closeScaler(t, s)
	cfg := e.config("prep")
	cfg.IdleTimeout, cfg.StableWindow = 500*time.Millisecond, 500*time.Millisecond
	svc, err := s.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := svc.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	t.Logf("first cold start (create + start): acquire waited %s", l.Waited)
	var standby scaler.InstanceSnapshot
	eventually(t, 30*time.Second, "no standby once back at zero", func() bool {
		snap := svc.Snapshot()
		for _, i := range snap.Instances {
			if i.State == "standby" && i.ID != "" {
				standby = i
			}
		}
		return snap.Up() == 0 && e.running() == 0 && standby.ID != ""
	})
	info, err := e.rt.Inspect(ctx, standby.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != scaler.StateInitialized || info.Addr == "" {
		t.Fatalf("standby %s is %s at %q, want initialized with an address", standby.ID, info.State, info.Addr)
	}
	// What runs is runc's process waiting to exec the app, not the app.
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", info.Pid)); err != nil || !strings.HasPrefix(string(comm), "runc") {
		t.Errorf("the standby's process %d is %q (%v), want runc's init waiting to exec the app", info.Pid, comm, err)
	}
	mbit := 100 * 256.0 / 1769
	checkHostShaped(t, e.rt, "the standby", standby.ID, mbit)

	// Keep the next instance up through the checks (not a new revision).
	cfg.IdleTimeout, cfg.StableWindow = time.Minute, time.Minute
	if _, err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	l, err = svc.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	t.Logf("cold start from the prepared standby: acquire waited %s", l.Waited)
	if l.Wake != scaler.WakeStart || l.Addr != info.Addr {
		t.Fatalf("second request: wake=%s addr=%s, want a start of the standby at %s", l.Wake, l.Addr, info.Addr)
	}
	if code, body := get(t, l.Addr, "/"); code != 200 {
		t.Fatalf("GET %s: %d %s", l.Addr, code, body)
	}
	var ready scaler.InstanceSnapshot
	for _, i := range svc.Snapshot().Instances {
		if i.State == "ready" {
			ready = i
		}
	}
	if ready.ID != standby.ID {
		t.Fatalf("ready instance %s, want the standby %s started", ready.ID, standby.ID)
	}
	if ready.Net.Network != s.NetworkName("prep") {
		t.Errorf("instance network %+v, want %s", ready.Net, s.NetworkName("prep"))
	}
	checkHostShaped(t, e.rt, "the instance", ready.ID, mbit)
	fenced(t, "the instance to 169.254.169.254:80", dialFrom(t, l.Addr, "169.254.169.254:80"))
}

// A prepared standby's start is not followed by an Inspect: an app that
// exits at once must still fail the start at once, with its exit code
// and its last words, not at start_timeout. The env value resolved at
// create (ExpandEnv) makes the standby's app, unlike the first one, exit.
func TestPreparedStandbyExitsAtOnce(t *testing.T) {
	e := newEnv(t)
	var creates atomic.Int32
	s := e.scaler(scaler.Options{Expand: func(string) (string, error) {
		if creates.Add(1) == 1 {
			return "", nil
		}
		return "cannot open the config file", nil
	}})
	defer closeScaler(t, s)
	cfg := e.config("prepfail")
	cfg.IdleTimeout, cfg.StableWindow = 500*time.Millisecond, 500*time.Millisecond
	cfg.Env = map[string]string{"HELLO_FAIL_START": "{env.PREPFAIL}"}
	cfg.ExpandEnv = []string{"HELLO_FAIL_START"}
	svc, err := s.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	eventually(t, 30*time.Second, "no initialized standby once back at zero", func() bool {
		for _, i := range svc.Snapshot().Instances {
			if info, err := e.rt.Inspect(context.Background(), i.ID); i.State == "standby" && i.ID != "" && err == nil && info.State == scaler.StateInitialized {
				return svc.Snapshot().Up() == 0
			}
		}
		return false
	})
	began := time.Now()
	_, err = svc.Acquire(context.Background())
	took := time.Since(began)
	var se *scaler.StartError
	if !errors.As(err, &se) {
		t.Fatalf("err %v, want a *StartError", err)
	}
	if !strings.Contains(strings.Join(se.Logs, "\n"), "cannot open the config file") || se.ExitCode != 1 {
		t.Errorf("exit %d logs %q (%s); want exit 1 and the app's last words", se.ExitCode, se.Logs, se.Reason)
	}
	if took > cfg.StartTimeout/4 {
		t.Errorf("the start failed after %s; it must fail when the app exits, not near start_timeout %s", took, cfg.StartTimeout)
	}
	t.Logf("failed start from a prepared standby: %s after %s", se.Reason, took.Round(time.Millisecond))
}

// TestRootlessNetworkSandbox attacks one rootless service from another the
// same way. Rootless Podman gives each container a network namespace of its
// own behind slirp4netns: B's address (a port published on the host's
// 127.0.0.1) is A's own loopback from inside A, and the host's loopback is
// out of slirp4netns's reach; the metadata range is fenced by podcell.
func TestRootlessNetworkSandbox(t *testing.T) {
	e := rootlessEnv(t)
	ctx := context.Background()
	host, err := e.rt.Host(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := e.scaler(scaler.Options{AllowUnenforcedLimits: host.CgroupVersion == "v1"})
	defer closeScaler(t, s)
	var addrs []string
	for _, name := range []string{"rla", "rlb"} {
		svc, err := s.Apply(e.config(name))
		if err != nil {
			t.Fatal(err)
		}
		l, err := svc.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		addrs = append(addrs, l.Addr)
		for _, i := range svc.Snapshot().Instances {
			if i.State == "ready" {
				checkLoopbackShaped(t, e.rt, i.ID, i.Net.RateMbit)
			}
		}
	}
	_, port, _ := net.SplitHostPort(addrs[1])
	fenced(t, "A to B's published address "+addrs[1], dialFrom(t, addrs[0], addrs[1]))
	fenced(t, "A to B's port through slirp4netns's host address", dialFrom(t, addrs[0], net.JoinHostPort("10.0.2.2", port)))
	fenced(t, "A to 169.254.169.254:80", dialFrom(t, addrs[0], "169.254.169.254:80"))
	if nets := ownedNetworks(t, e.rt, e.owner); len(nets) != 0 {
		t.Errorf("rootless networks: %v, want none (each instance has its own namespace)", nets)
	}
}

// checkLoopbackShaped looks into a rootless instance's network namespace:
// its lo carries an htb with one class per direction at the instance's rate.
func checkLoopbackShaped(t *testing.T, rt *scaler.Podman, id string, mbit float64) {
	t.Helper()
	info, h := instanceNetlink(t, rt, id)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	classes, err := h.ClassList(lo, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range classes {
		if htb, ok := c.(*netlink.HtbClass); ok && math.Abs(float64(htb.Rate*8)/1e6-mbit) < mbit/100 {
			n++
		}
	}
	if n != 2 || mbit < 1 {
		t.Errorf("%s: htb classes on lo %v, want 2 at %.1f Mbit/s", info.Name, classes, mbit)
	}
}

// inNetns runs f on this goroutine's OS thread once move (netns.New, or
// netns.Set) has put the thread in another network namespace, and puts it
// back in the host's.
func inNetns(t *testing.T, move func() error, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	if err = move(); err == nil {
		f()
	}
	if serr := netns.Set(orig); serr != nil {
		// The thread stays locked, and ends with the goroutine.
		t.Fatalf("back to the host's network namespace: %v", serr)
	}
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatalf("enter a network namespace: %v", err)
	}
}

// testNetns is a network namespace of a test's own, standing for a machine
// beside the host: it is linked to the host by a veth pair (host end
// hostEnd) and removed with its links at the end of the test.
type testNetns struct {
	ns      netns.NsHandle
	h       *netlink.Handle
	hostEnd netlink.Link
	inside  netlink.Link
}

// newTestNetns makes the namespace and a veth pair named <prefix>h (on the
// host) and <prefix>n (inside). The host end is left for the caller to
// address or enslave.
func newTestNetns(t *testing.T, prefix string) *testNetns {
	t.Helper()
	var ns netns.NsHandle
	inNetns(t, func() (err error) { ns, err = netns.New(); return err }, func() {})
	var err error
	tn := &testNetns{ns: ns}
	t.Cleanup(func() {
		if tn.hostEnd != nil {
			netlink.LinkDel(tn.hostEnd)
		}
		if tn.h != nil {
			tn.h.Close()
		}
		ns.Close()
	})
	if tn.h, err = netlink.NewHandleAt(ns); err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: prefix + "h"}, PeerName: prefix + "n", PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth pair %sh/%sn: %v", prefix, prefix, err)
	}
	if tn.hostEnd, err = netlink.LinkByName(prefix + "h"); err != nil {
		t.Fatal(err)
	}
	if tn.inside, err = tn.h.LinkByName(prefix + "n"); err != nil {
		t.Fatal(err)
	}
	if err := tn.h.LinkSetUp(tn.inside); err != nil {
		t.Fatal(err)
	}
	if lo, err := tn.h.LinkByName("lo"); err != nil || tn.h.LinkSetUp(lo) != nil {
		t.Fatalf("lo in the test namespace: %v", err)
	}
	return tn
}

// addr puts cidr on the namespace's end of the veth (or on its lo).
func (tn *testNetns) addr(t *testing.T, link netlink.Link, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.h.AddrAdd(link, a); err != nil {
		t.Fatalf("address %s in the test namespace: %v", cidr, err)
	}
}

// listen opens a TCP listener on addr inside the namespace. Each
// connection's remote address is sent on the returned channel, and the
// connection closed.
func (tn *testNetns) listen(t *testing.T, addr string) (net.Listener, <-chan string) {
	t.Helper()
	var ln net.Listener
	var err error
	inNetns(t, func() error { return netns.Set(tn.ns) }, func() {
		ln, err = net.Listen("tcp", addr) // the socket is the namespace's for good
	})
	if err != nil {
		t.Fatalf("listen on %s in the test namespace: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, accepting(ln)
}

// accepting accepts ln's connections until it is closed, sending each
// one's remote address.
func accepting(ln net.Listener) <-chan string {
	from := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case from <- c.RemoteAddr().String():
			default:
			}
			c.Close()
		}
	}()
	return from
}

// outsideWorld is a listener one router hop beyond the host, as the
// internet is: a namespace linked to the host by 198.18.0.0/30 (the host
// 198.18.0.1, the namespace 198.18.0.2) holds 198.19.0.1 on its lo, which
// the host routes through 198.18.0.2. An instance's connection there is
// forwarded by the host and goes through netavark's NAT, as one to any
// outside address does; the listener sends the source address it saw.
// 198.18.0.0/15 is the range set aside for benchmarking (RFC 2544).
func outsideWorld(t *testing.T) (addr string, from <-chan string) {
	t.Helper()
	tn := newTestNetns(t, fmt.Sprintf("pco%d", os.Getpid()%100000))
	ha, _ := netlink.ParseAddr("198.18.0.1/30")
	if err := netlink.AddrAdd(tn.hostEnd, ha); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(tn.hostEnd); err != nil {
		t.Fatal(err)
	}
	tn.addr(t, tn.inside, "198.18.0.2/30")
	lo, _ := tn.h.LinkByName("lo")
	tn.addr(t, lo, "198.19.0.1/32")
	if err := tn.h.RouteAdd(&netlink.Route{Gw: net.ParseIP("198.18.0.1")}); err != nil {
		t.Fatalf("default route in the test namespace: %v", err)
	}
	_, dst, _ := net.ParseCIDR("198.19.0.0/24")
	if err := netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP("198.18.0.2")}); err != nil {
		t.Fatalf("host route to %s: %v", dst, err)
	}
	ln, from := tn.listen(t, "198.19.0.1:0")
	return ln.Addr().String(), from
}

// foreignBridge is a bridge that is not podcell's nor Podman's (docker0,
// libvirt's virbr0, a user's own): the host holds 203.0.113.1/24 on it,
// and a namespace behind it (a container or VM of another tool)
// 203.0.113.2. Both listen; both are reachable from the host.
func foreignBridge(t *testing.T) (hostAddr, guestAddr string) {
	t.Helper()
	name := fmt.Sprintf("pcb%d", os.Getpid()%100000)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("bridge %s: %v", name, err)
	}
	t.Cleanup(func() { netlink.LinkDel(br) })
	a, _ := netlink.ParseAddr("203.0.113.1/24")
	if err := netlink.AddrAdd(br, a); err != nil {
		t.Fatal(err)
	}
	tn := newTestNetns(t, fmt.Sprintf("pcg%d", os.Getpid()%100000))
	if err := netlink.LinkSetMaster(tn.hostEnd, br); err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{tn.hostEnd, br} {
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	tn.addr(t, tn.inside, "203.0.113.2/24")
	hl, err := net.Listen("tcp", "203.0.113.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hl.Close() })
	accepting(hl)
	gl, _ := tn.listen(t, "203.0.113.2:0")
	for _, addr := range []string{hl.Addr().String(), gl.Addr().String()} {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("the host cannot reach %s on the foreign bridge: %v", addr, err)
		}
		c.Close()
	}
	return hl.Addr().String(), gl.Addr().String()
}

// instanceNetlink inspects the container id and opens a netlink handle in
// its network namespace, closed at the test's end.
func instanceNetlink(t *testing.T, rt *scaler.Podman, id string) (scaler.ContainerInfo, *netlink.Handle) {
	t.Helper()
	info, err := rt.Inspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return info, pidNetlink(t, info.Pid)
}

// pidNetlink opens a netlink handle in the network namespace of process
// pid, closed at the test's end.
func pidNetlink(t *testing.T, pid int) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		t.Fatalf("network namespace of process %d: %v", pid, err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// fencedRoute checks that the instance whose process is pid routes dst as
// unreachable.
func fencedRoute(t *testing.T, pid int, dst *net.IPNet) {
	t.Helper()
	h := pidNetlink(t, pid)
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == dst.String() && r.Type == unix.RTN_UNREACHABLE {
			return
		}
	}
	t.Errorf("the instance (process %d) has no unreachable route to %s: %v", pid, dst, routes)
}
