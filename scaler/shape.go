package scaler

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// An instance's network is set up in its network namespace and on the host
// once its container has started, before it is marked ready: the network
// namespace only exists from the start on. It is done through netlink from
// this process (root on the host has every capability over a container's
// network namespace, rootless ones included); the container itself, with
// every capability dropped, cannot undo it.
//
// Two things are set:
//
//   - Routes that make the ranges an instance has no business reaching fail
//     at once (EHOSTUNREACH): the link-local range, where cloud metadata
//     services live (this project's own machines answer on
//     169.254.169.254), Podman's default network and podcell's network pool
//     (other services' instances), the subnet of every other Podman
//     network, and every subnet the host reaches directly on a bridge or a
//     veth (docker0, libvirt's virbr0, a user's own bridges and the
//     containers or VMs behind them): see fenceRanges. netavark's isolate
//     option is no fence here: netavark 1.4 (Debian 12) only drops traffic
//     between isolated networks, not between an isolated network and any
//     other bridge; and where it drops, a dropped SYN makes a probe hang
//     for its whole timeout, where the route says no at once.
//     A route inside the namespace rather than a host firewall rule: it
//     needs no rule set of our own beside netavark's (iptables-nft here),
//     lives and dies with the container, and covers rootless instances,
//     whose traffic leaves through slirp4netns, where no host rule sees it.
//   - A rate in each direction, set on the host, outside the instance's
//     reach: a token bucket (tbf) on the host end of its veth shapes what
//     it receives (uploads to it, what it fetches), and one on an IFB
//     device of its own, to which the veth's ingress is redirected, what
//     it sends (downloads from it, its own uploads out): see shapeIngress.
//     Egress shaping queues and so keeps TCP at the rate; an ingress
//     policer can only drop, which TCP answers by backing off well below
//     the rate (and this host's kernel has no policer action at all:
//     CONFIG_NET_ACT_POLICE is off). Rootless instances have no host end
//     to shape: see sandboxNetns.

// blockedRanges are the destinations no instance reaches, whatever the
// host looks like. An instance's own network is a /24 inside podcellPool:
// its more specific route wins, so instances of one service still reach
// each other and their gateway.
var blockedRanges = []string{
	"169.254.0.0/16", // link-local: cloud metadata (169.254.169.254)
	"10.88.0.0/16",   // Podman's default network: containers that are not podcell's
	podcellPool,      // every podcell service's network
}

// fenceRanges is every destination an instance is fenced off from:
// blockedRanges, others (the subnets of every Podman network, active or
// not, as the scaler last listed them), and what the host reaches directly
// on a bridge or veth (hostBridgeNets), which covers bridges Podman does
// not know (docker0, libvirt's, a user's) once they exist. own are the
// instance's own subnets: a range inside one of them is left out, so its
// own network and its gateway (where DNS answers) stay reachable; a wider
// range that contains it is fine, the own route being more specific.
func fenceRanges(others, own []*net.IPNet) ([]*net.IPNet, error) {
	bridges, err := hostBridgeNets()
	if err != nil {
		return nil, err
	}
	var all []*net.IPNet
	for _, cidr := range blockedRanges {
		_, n, _ := net.ParseCIDR(cidr)
		all = append(all, n)
	}
	all = append(append(all, others...), bridges...)
	seen := map[string]bool{}
	var out []*net.IPNet
next:
	for _, n := range all {
		if n == nil || n.IP.To4() == nil || seen[n.String()] {
			continue
		}
		for _, o := range own {
			if inside(n, o) {
				continue next
			}
		}
		seen[n.String()] = true
		out = append(out, &net.IPNet{IP: n.IP.Mask(n.Mask), Mask: n.Mask})
	}
	return out, nil
}

// inside says whether n lies within o (o itself included).
func inside(n, o *net.IPNet) bool {
	nOnes, _ := n.Mask.Size()
	oOnes, _ := o.Mask.Size()
	return o.Contains(n.IP) && nOnes >= oOnes
}

// hostBridgeNets is every IPv4 subnet the host reaches directly (a route of
// scope link, or an address's prefix) on a bridge or a veth: other
// networks' containers and VMs, and the host's own addresses there. Links
// that carry a default route are left out: that is the host's uplink (a
// bridge, on hosts whose NIC is enslaved to one; a veth, when the host is
// itself a container), and its subnet is the outside world an instance
// reaches by NAT as before, as are routed networks beyond it (a VPC, the
// internet). The host's own addresses there stay reachable, as they are
// through the instance's gateway, which is the host too.
func hostBridgeNets() ([]*net.IPNet, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list the host's links: %w", err)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list the host's routes: %w", err)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	uplink := map[int]bool{}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			uplink[r.LinkIndex] = true
			for _, nh := range r.MultiPath {
				uplink[nh.LinkIndex] = true
			}
		}
	}
	fenced := map[int]bool{}
	for _, l := range links {
		if t := l.Type(); (t == "bridge" || t == "veth") && !uplink[l.Attrs().Index] {
			fenced[l.Attrs().Index] = true
		}
	}
	var out []*net.IPNet
	for _, r := range routes {
		if r.Scope == netlink.SCOPE_LINK && r.Dst != nil && !r.Dst.IP.IsUnspecified() && fenced[r.LinkIndex] {
			out = append(out, r.Dst)
		}
	}
	for _, a := range addrs {
		if fenced[a.LinkIndex] && a.IPNet != nil {
			out = append(out, &net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask})
		}
	}
	return out, nil
}

// rtnUnreachable is RTN_UNREACHABLE (linux/rtnetlink.h), spelled out so the
// package builds on every GOOS.
const rtnUnreachable = 7

// ethPAll is ETH_P_ALL (linux/if_ether.h): a filter for every protocol.
const ethPAll = 0x0003

// InstanceNet is how an instance's network was set up, for status pages.
type InstanceNet struct {
	// Network is the Podman network the instance is on; "" under rootless
	// Podman, where each instance has a network namespace of its own
	// behind slirp4netns.
	Network string `json:"network"`
	// RateMbit is the rate in each direction, in Mbit/s.
	RateMbit float64 `json:"rate_mbit"`
	// Shaping says where the rate is set, or why it is not.
	Shaping string `json:"shaping"`
}

// shapeBurst is the token bucket size: at least one full-size GSO packet
// (64 KiB, which a veth carries whole), and 4 ms of traffic at high rates.
func shapeBurst(bytesPerSec uint64) uint32 {
	return uint32(max(64<<10, bytesPerSec/250))
}

// tbfFor is a root token bucket on link at rate (bits/s), with room for
// 50 ms of queue: enough to keep TCP busy, short enough to add little
// delay.
func tbfFor(link int, bps int64) *netlink.Tbf {
	rate := uint64(bps / 8)
	burst := shapeBurst(rate)
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       rate,
		Buffer:     netlink.Xmittime(rate, burst),
		Limit:      burst + uint32(rate/20),
	}
}

// netSetup is what sandboxNetns sets up for one instance.
type netSetup struct {
	pid    int    // the container's first process, whose network namespace it is
	bridge string // the host bridge of its Podman network; "" under rootless Podman
	bps    int64  // the rate in each direction, bits/s
	port   int    // the app's port
	others []*net.IPNet
	ifb    ifbDevice // rootful: the host device that shapes what it sends
}

// sandboxNetns fences off and shapes the network namespace of the
// container whose first process is ns.pid. Under rootless Podman (no
// bridge) the gateway's traffic arrives on the namespace's loopback: see
// shapeLoopback.
func sandboxNetns(ns netSetup) (string, error) {
	pid, bridge, bps, port := ns.pid, ns.bridge, ns.bps, ns.port
	if pid <= 0 {
		return "", errors.New("the container has no process to find its network namespace by")
	}
	nsh, err := netns.GetFromPid(pid)
	if err != nil {
		if os.IsPermission(err) {
			return "", fmt.Errorf("open the network namespace of process %d: %w (podcell must run as root to shape and fence instances)", pid, err)
		}
		return "", fmt.Errorf("open the network namespace of process %d: %w", pid, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return "", fmt.Errorf("netlink in the network namespace of process %d: %w", pid, err)
	}
	defer h.Close()

	out, err := defaultLink(h)
	if err != nil {
		return "", err
	}
	addrs, err := h.AddrList(out, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("the container's addresses on %s: %w", out.Attrs().Name, err)
	}
	var own []*net.IPNet
	for _, a := range addrs {
		own = append(own, &net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask})
	}
	fence, err := fenceRanges(ns.others, own)
	if err != nil {
		return "", err
	}
	for _, dst := range fence {
		if err := h.RouteReplace(&netlink.Route{Dst: dst, Type: rtnUnreachable}); err != nil {
			return "", fmt.Errorf("route %s unreachable in the container: %w", dst, err)
		}
	}

	rate := fmt.Sprintf("%.1f Mbit/s", float64(bps)/1e6)
	if bridge == "" {
		// Rootless: slirp4netns's tap carries the instance's own
		// connections out; the gateway's come in over loopback.
		if err := h.QdiscReplace(tbfFor(out.Attrs().Index, bps)); err != nil {
			return "", fmt.Errorf("shape %s in the container: %w", out.Attrs().Name, err)
		}
		if err := shapeLoopback(h, bps, port); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s each way through the gateway (htb on the container's lo, port %d); %s out on %s; "+
			"what the instance fetches from outside is not shaped (slirp4netns writes it into the namespace)", rate, port, rate, out.Attrs().Name), nil
	}

	// Rootful: find the host end of the container's veth before touching
	// anything, and check it is on the service's bridge.
	host, err := hostPeer(out, bridge)
	if err != nil {
		return "", err
	}
	if err := netlink.QdiscReplace(tbfFor(host.Attrs().Index, bps)); err != nil {
		return "", fmt.Errorf("shape %s on the host: %w", host.Attrs().Name, err)
	}
	ifb, err := shapeIngress(host, ns.ifb, bps)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s each way on the host: tbf on %s (to the instance); %s's ingress redirected to %s, tbf (from the instance)",
		rate, host.Attrs().Name, host.Attrs().Name, ifb), nil
}

// ifbDevice names and labels the host device that shapes what one
// instance sends (see shapeIngress). The name comes from the container's
// id, as Podman shows it short (12 hex digits): ifb<id> fits the kernel's
// 15 characters, and no two containers share it. The alias says whose it
// is, so that Reconcile finds the leftovers of a podcell that crashed.
type ifbDevice struct {
	name  string
	alias string
}

const ifbAliasPrefix = "podcell "

func ifbFor(owner, service, containerName, id string) ifbDevice {
	return ifbDevice{
		name:  "ifb" + id[:min(12, len(id))],
		alias: fmt.Sprintf("%sowner=%s service=%s container=%s id=%s", ifbAliasPrefix, owner, service, containerName, id),
	}
}

// parseIFBAlias reads what ifbFor wrote; ok is false for another's device.
func parseIFBAlias(alias string) (owner, service, containerName, id string, ok bool) {
	rest, ok := strings.CutPrefix(alias, ifbAliasPrefix)
	if !ok {
		return "", "", "", "", false
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(rest) {
		k, v, _ := strings.Cut(f, "=")
		kv[k] = v
	}
	return kv["owner"], kv["service"], kv["container"], kv["id"], kv["owner"] != "" && kv["id"] != ""
}

// shapeIngress shapes what the instance sends (downloads from it) on the
// host side, as the CNI bandwidth plugin does
// (containernetworking/plugins, plugins/meta/bandwidth): an ingress qdisc
// on the host end of its veth, whose one u32 filter matches every packet
// and redirects it (mirred) to an IFB device of the instance's own; a tbf
// on the IFB's egress queues it to the rate, and the IFB hands it back to
// the veth's receive path, where the bridge takes it. A tbf on the veth's
// ingress itself is not possible (ingress has no queue; only a policer,
// which drops, and this kernel has none). The IFB is made (or taken over,
// when an earlier run made it) and shaped before the redirect is set, so
// no packet meets a device that is down. It costs a cold start about 3 ms
// of netlink calls (BenchmarkShapeIngress), most of it the kernel making
// the device.
func shapeIngress(host netlink.Link, dev ifbDevice, bps int64) (string, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU, attrs.Flags = dev.name, host.Attrs().MTU, net.FlagUp
	made := &netlink.Ifb{LinkAttrs: attrs}
	var ifb netlink.Link = made
	switch err := netlink.LinkAdd(made); {
	case err == nil:
		// The kernel takes an alias on a device that exists, not in the
		// message that makes it.
		if err := netlink.LinkSetAlias(made, dev.alias); err != nil {
			netlink.LinkDel(made)
			return "", fmt.Errorf("label the device %s: %w", dev.name, err)
		}
	case errors.Is(err, syscall.EEXIST):
		// An earlier run's, whose instance is adopted: take it over if
		// it is that instance's.
		if ifb, err = netlink.LinkByName(dev.name); err != nil {
			return "", fmt.Errorf("the device %s: %w", dev.name, err)
		}
		if ifb.Type() != "ifb" || ifb.Attrs().Alias != dev.alias {
			return "", fmt.Errorf("a host device named %s exists (%s, alias %q) and is not this instance's", dev.name, ifb.Type(), ifb.Attrs().Alias)
		}
		if ifb.Attrs().Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(ifb); err != nil {
				return "", fmt.Errorf("set the device %s up: %w", dev.name, err)
			}
		}
	default:
		return "", fmt.Errorf("make the device %s that shapes what the instance sends: %w (does the kernel have CONFIG_IFB?)", dev.name, err)
	}
	if err := netlink.QdiscReplace(tbfFor(ifb.Attrs().Index, bps)); err != nil {
		return "", fmt.Errorf("shape %s on the host: %w", dev.name, err)
	}
	idx := host.Attrs().Index
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	err := netlink.QdiscAdd(ingress)
	if errors.Is(err, syscall.EEXIST) {
		// An adopted instance's: anew, with its filters, as it may
		// redirect to an IFB that is gone, and a second filter would not
		// replace the first.
		netlink.QdiscDel(ingress)
		err = netlink.QdiscAdd(ingress)
	}
	if err != nil {
		return "", fmt.Errorf("ingress qdisc on the host's %s: %w", host.Attrs().Name, err)
	}
	redirect := &netlink.U32{ // no selector: one key that matches every packet
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: ingress.Handle, Priority: 1, Protocol: ethPAll},
		ClassId:     netlink.MakeHandle(1, 1),
		RedirIndex:  ifb.Attrs().Index,
	}
	if err := netlink.FilterAdd(redirect); err != nil {
		return "", fmt.Errorf("redirect the host's %s to %s: %w", host.Attrs().Name, dev.name, err)
	}
	return dev.name, nil
}

// removeIFB removes the IFB device of a container that is gone. One that
// is not there is not an error; one that is not podcell's is left alone.
func removeIFB(dev ifbDevice) error {
	l, err := netlink.LinkByName(dev.name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("the device %s: %w", dev.name, err)
	}
	if l.Type() != "ifb" || !strings.HasPrefix(l.Attrs().Alias, ifbAliasPrefix) {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("remove the device %s: %w", dev.name, err)
	}
	return nil
}

// ifbDevices lists podcell's IFB devices on the host, by alias.
func ifbDevices() ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list the host's links: %w", err)
	}
	var out []netlink.Link
	for _, l := range links {
		if l.Type() == "ifb" && strings.HasPrefix(l.Attrs().Alias, ifbAliasPrefix) {
			out = append(out, l)
		}
	}
	return out, nil
}

// defaultLink is the link of the namespace's default route: eth0 on a
// Podman network, tap0 behind slirp4netns.
func defaultLink(h *netlink.Handle) (netlink.Link, error) {
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list the container's routes: %w", err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.LinkIndex > 0 {
			return h.LinkByIndex(r.LinkIndex)
		}
	}
	return nil, errors.New("the container has no default route to shape")
}

// hostPeer finds the host end of the container's veth: its IFLA_LINK is the
// peer's index in the host's namespace.
func hostPeer(in netlink.Link, bridge string) (netlink.Link, error) {
	if in.Type() != "veth" || in.Attrs().ParentIndex == 0 {
		return nil, fmt.Errorf("the container's %s is a %s, not a veth: cannot find its host end", in.Attrs().Name, in.Type())
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("the network's bridge %s: %w", bridge, err)
	}
	peer, err := netlink.LinkByIndex(in.Attrs().ParentIndex)
	if err != nil {
		return nil, fmt.Errorf("the host end of the container's %s: %w", in.Attrs().Name, err)
	}
	if peer.Type() != "veth" || peer.Attrs().MasterIndex != br.Attrs().Index {
		return nil, fmt.Errorf("host link %d (%s) is not a veth on bridge %s: is podcell running in the host's network namespace?", peer.Attrs().Index, peer.Attrs().Name, bridge)
	}
	return peer, nil
}

// shapeLoopback shapes the gateway's traffic of a rootless instance. Under
// rootless Podman the gateway's connections reach the app through
// rootlessport, whose child dials the app inside the container's
// namespace, over its loopback: measured here, a 30 MB download moved
// 30 MB through lo and nothing through tap0. An htb on lo with one class
// per direction (matched by the app's port; the default class 0 lets
// everything else through unshaped, so the app's own loopback traffic keeps
// its speed) sets the rate.
func shapeLoopback(h *netlink.Handle, bps int64, port int) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("the container's lo: %w", err)
	}
	idx := lo.Attrs().Index
	root := netlink.MakeHandle(1, 0)
	if err := h.QdiscReplace(netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: idx, Handle: root, Parent: netlink.HANDLE_ROOT})); err != nil {
		return fmt.Errorf("htb on the container's lo: %w", err)
	}
	rate := uint64(bps)
	burst := shapeBurst(rate / 8)
	p := uint32(port)
	for i, key := range []netlink.TcU32Key{
		{Mask: 0xffff0000, Val: p << 16, Off: 20}, // source port: the app answers (download)
		{Mask: 0x0000ffff, Val: p, Off: 20},       // destination port: the gateway sends (upload)
	} {
		class := netlink.MakeHandle(1, uint16(i+1))
		c := netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: idx, Parent: root, Handle: class},
			netlink.HtbClassAttrs{Rate: rate, Ceil: rate, Buffer: burst, Cbuffer: burst})
		if err := h.ClassReplace(c); err != nil {
			return fmt.Errorf("htb class on the container's lo: %w", err)
		}
		f := &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: root, Priority: uint16(i + 1), Protocol: 0x0800},
			ClassId:     class,
			Sel: &netlink.TcU32Sel{Flags: 1, // TC_U32_TERMINAL
				Keys: []netlink.TcU32Key{
					{Mask: 0x00ff0000, Val: 6 << 16, Off: 8}, // IP protocol TCP
					key,                                      // at offset 20: no IP options (Linux sends none)
				}},
		}
		if err := h.FilterReplace(f); err != nil {
			return fmt.Errorf("filter on the container's lo: %w", err)
		}
	}
	return nil
}
