package scaler

import (
	"errors"
	"fmt"
	"net"
	"os"

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
//     (other services' instances). netavark's isolate option already drops
//     traffic between podcell's bridges on the host, but a dropped SYN
//     makes a probe hang for its whole timeout; the route says no at once.
//     A route inside the namespace rather than a host firewall rule: it
//     needs no rule set of our own beside netavark's (iptables-nft here),
//     lives and dies with the container, and covers rootless instances,
//     whose traffic leaves through slirp4netns, where no host rule sees it.
//   - A rate in each direction, as egress shaping on both ends of the
//     instance's link: a token bucket (tbf) on the container's eth0 shapes
//     what the instance sends (downloads from it), one on the host side of
//     its veth what it receives (uploads to it). Egress shaping queues and
//     so keeps TCP at the rate; an ingress policer can only drop, which
//     TCP answers by backing off well below the rate (and this host's
//     kernel has no policer action at all: CONFIG_NET_ACT_POLICE is off).

// blockedRanges are the destinations no instance reaches. An instance's own
// network is a /24 inside podcellPool: its more specific route wins, so
// instances of one service still reach each other and their gateway.
var blockedRanges = []string{
	"169.254.0.0/16", // link-local: cloud metadata (169.254.169.254)
	"10.88.0.0/16",   // Podman's default network: containers that are not podcell's
	podcellPool,      // every podcell service's network
}

// rtnUnreachable is RTN_UNREACHABLE (linux/rtnetlink.h), spelled out so the
// package builds on every GOOS.
const rtnUnreachable = 7

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

// sandboxNetns sets the blocked routes and the rate of the container whose
// first process is pid. bridge is the host bridge of its Podman network
// ("" under rootless Podman, whose gateway traffic arrives on the
// namespace's loopback: see shapeLoopback). port is the app's port.
func sandboxNetns(pid int, bridge string, bps int64, port int) (string, error) {
	if pid <= 0 {
		return "", errors.New("the container has no process to find its network namespace by")
	}
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		if os.IsPermission(err) {
			return "", fmt.Errorf("open the network namespace of process %d: %w (podcell must run as root to shape and fence instances)", pid, err)
		}
		return "", fmt.Errorf("open the network namespace of process %d: %w", pid, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return "", fmt.Errorf("netlink in the network namespace of process %d: %w", pid, err)
	}
	defer h.Close()

	for _, cidr := range blockedRanges {
		_, dst, _ := net.ParseCIDR(cidr)
		if err := h.RouteReplace(&netlink.Route{Dst: dst, Type: rtnUnreachable}); err != nil {
			return "", fmt.Errorf("route %s unreachable in the container: %w", cidr, err)
		}
	}

	out, err := defaultLink(h)
	if err != nil {
		return "", err
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
	if err := h.QdiscReplace(tbfFor(out.Attrs().Index, bps)); err != nil {
		return "", fmt.Errorf("shape %s in the container: %w", out.Attrs().Name, err)
	}
	if err := netlink.QdiscReplace(tbfFor(host.Attrs().Index, bps)); err != nil {
		return "", fmt.Errorf("shape %s on the host: %w", host.Attrs().Name, err)
	}
	return fmt.Sprintf("%s each way (tbf on the container's %s and the host's %s)", rate, out.Attrs().Name, host.Attrs().Name), nil
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
