package scaler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
)

// Each service's instances share a Podman network of their own, so one
// service cannot reach another's instances behind the gateway's back (its
// header stripping, webhooks and metrics). The network is a bridge with
// netavark's isolate option, which on netavark 1.4 (Debian 12) only drops
// forwarded traffic between isolated networks: an isolated bridge still
// reaches Podman's default network, docker0 or libvirt's bridges. What
// fences an instance off from those, and from other services' networks at
// once rather than by a silent drop, are the unreachable routes in its
// network namespace (fenceRanges in shape.go). The host (the gateway)
// reaches every instance, and instances reach the outside through NAT as
// before. The network is made on the service's first container, labelled
// like the containers (owner and service), removed with the service, and
// adopted or removed by Reconcile after a restart as containers are.
//
// Rootless Podman gives each container a network namespace of its own
// behind slirp4netns, with the host's loopback (where rootless ports are
// published) out of reach: instances are apart already, and podcell leaves
// them on it.

// Networks is what the scaler needs from an engine to give each service a
// network of its own. *Podman has it; with a Runtime that does not (the
// policy tests' fake) instances run on the engine's default network.
type Networks interface {
	CreateNetwork(ctx context.Context, n NetworkSpec) (NetworkInfo, error)
	// RemoveNetwork removes a network; removing one that is gone is not an error.
	RemoveNetwork(ctx context.Context, name string) error
	// ListNetworks returns every network of the engine, podcell's or not:
	// a new network's subnet must not overlap any of them.
	ListNetworks(ctx context.Context) ([]NetworkInfo, error)
}

// NetworkSpec is a network the scaler asks for: an isolated bridge without
// DNS (instances resolve names through the host's resolvers, and no
// aardvark-dns process has to start).
type NetworkSpec struct {
	Name   string
	Labels map[string]string
	Subnet *net.IPNet
}

// NetworkInfo is a network as the engine reports it.
type NetworkInfo struct {
	Name      string
	Labels    map[string]string
	Subnets   []*net.IPNet
	Interface string // the bridge on the host
}

// podcellPool is where service networks get their subnets, one /24 each
// (253 instances), so every instance can be fenced off from all of them with
// one route (see blockedRanges). It is where Podman allocates its own
// networks first; Podman refuses a subnet in use, and we take the next.
const podcellPool = "10.89.0.0/16"

// netState is the networks this scaler made or adopted, by service.
type netState struct {
	mu        sync.Mutex // held while a network is looked up or made: not on the request path
	byService map[string]NetworkInfo
	// subnets is every Podman network's subnet at the last list, which
	// each instance is fenced off from (fenceRanges): also those of
	// networks whose bridge is not up yet, and so has no host route to
	// find it by. Listed when a network is made or adopted, at Reconcile
	// and when a standby is prepared, never on a cold start's path.
	subnets []*net.IPNet
}

// networks is the engine's network API if services get networks of their
// own: rootful Podman. Nil otherwise.
func (s *Scaler) networks() Networks {
	if s.host.Rootless || s.opts.NoNetworkSandbox {
		return nil
	}
	nw, _ := s.rt.(Networks)
	return nw
}

// NetworkName is the Podman network of a service's instances.
func (s *Scaler) NetworkName(service string) string {
	if s.networks() == nil {
		return ""
	}
	return s.opts.Owner + "-" + service
}

// onServiceNetwork says whether c is on the service's network: a container
// an earlier run (or an older podcell) left on another is not adopted.
func (s *Scaler) onServiceNetwork(service string, c ContainerInfo) bool {
	name := s.NetworkName(service)
	return name == "" || c.Network == name
}

// create makes a container, and the network of its service first if it has
// none yet. Standby and cold-start creates go through it.
func (s *Scaler) create(ctx context.Context, cs ContainerSpec) (string, error) {
	if cs.Network == "" {
		return s.rt.Create(ctx, cs)
	}
	service := cs.Labels[LabelService]
	if _, err := s.ensureNetwork(ctx, service); err != nil {
		return "", err
	}
	id, err := s.rt.Create(ctx, cs)
	if err != nil && strings.Contains(err.Error(), "network not found") {
		// Removed behind our back (by hand, or by the removal of an
		// earlier service of this name): make it again, once.
		s.forgetNetwork(service)
		if _, err := s.ensureNetwork(ctx, service); err != nil {
			return "", err
		}
		id, err = s.rt.Create(ctx, cs)
	}
	return id, err
}

// ensureNetwork returns the service's network, adopting one an earlier run
// left or making it.
func (s *Scaler) ensureNetwork(ctx context.Context, service string) (NetworkInfo, error) {
	nw := s.networks()
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	if n, ok := s.net.byService[service]; ok {
		return n, nil
	}
	name := s.NetworkName(service)
	list, err := nw.ListNetworks(ctx)
	if err != nil {
		return NetworkInfo{}, fmt.Errorf("network for service %s: list networks: %w", service, err)
	}
	s.net.subnets = subnetsOf(list)
	var used []*net.IPNet
	for _, n := range list {
		if n.Name == name {
			if n.Labels[LabelOwner] != s.opts.Owner || n.Labels[LabelService] != service {
				return NetworkInfo{}, fmt.Errorf("network for service %s: a network named %s exists and is not this podcell's (labels %v): remove it (podman network rm %s) or set another owner", service, name, n.Labels, name)
			}
			return s.keepNetwork(service, n), nil
		}
		used = append(used, n.Subnets...)
	}
	for {
		subnet := freeSubnet(used)
		if subnet == nil {
			return NetworkInfo{}, fmt.Errorf("network for service %s: no free /24 left in %s (one per service): remove unused Podman networks (podman network prune)", service, podcellPool)
		}
		n, err := nw.CreateNetwork(ctx, NetworkSpec{Name: name, Subnet: subnet,
			Labels: map[string]string{LabelOwner: s.opts.Owner, LabelService: service}})
		if err == nil {
			s.net.subnets = append(s.net.subnets, subnet)
			s.log.Info("created the service's network", zap.String("service", service), zap.String("network", name), zap.Stringer("subnet", subnet))
			return s.keepNetwork(service, n), nil
		}
		if !strings.Contains(err.Error(), "already used") {
			return NetworkInfo{}, fmt.Errorf("network for service %s: %w", service, err)
		}
		// Taken by a host route Podman checks, or by a network made since
		// we listed: try the next.
		used = append(used, subnet)
	}
}

// subnetsOf is the subnets of networks.
func subnetsOf(networks []NetworkInfo) []*net.IPNet {
	var out []*net.IPNet
	for _, n := range networks {
		out = append(out, n.Subnets...)
	}
	return out
}

// refreshSubnets lists the engine's networks again for fenceRanges, so a
// network made since the last list is fenced off from the instances set up
// from now on. Off the request path: a standby's preparation calls it. A
// failure keeps the last list.
func (s *Scaler) refreshSubnets(ctx context.Context) {
	nw := s.networks()
	if nw == nil {
		return
	}
	list, err := nw.ListNetworks(ctx)
	if err != nil {
		s.log.Warn("cannot list networks to fence instances off from them", zap.Error(err))
		return
	}
	s.net.mu.Lock()
	s.net.subnets = subnetsOf(list)
	s.net.mu.Unlock()
}

func (s *Scaler) keepNetwork(service string, n NetworkInfo) NetworkInfo {
	if s.net.byService == nil {
		s.net.byService = map[string]NetworkInfo{}
	}
	s.net.byService[service] = n
	return n
}

func (s *Scaler) forgetNetwork(service string) {
	s.net.mu.Lock()
	delete(s.net.byService, service)
	s.net.mu.Unlock()
}

// freeSubnet is the first /24 of podcellPool that overlaps none of used.
func freeSubnet(used []*net.IPNet) *net.IPNet {
	_, pool, _ := net.ParseCIDR(podcellPool)
	base := pool.IP.To4()
	for i := 0; i < 256; i++ {
		n := &net.IPNet{IP: net.IPv4(base[0], base[1], byte(i), 0).To4(), Mask: net.CIDRMask(24, 32)}
		free := true
		for _, u := range used {
			if u.Contains(n.IP) || n.Contains(u.IP) {
				free = false
				break
			}
		}
		if free {
			return n
		}
	}
	return nil
}

// removeNetwork removes a service's network once its instances are gone,
// unless the service was declared again meanwhile (its new instances use
// the network).
func (s *Scaler) removeNetwork(ctx context.Context, service string) error {
	nw := s.networks()
	if nw == nil {
		return nil
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	if s.Service(service) != nil {
		return nil
	}
	delete(s.net.byService, service)
	if err := nw.RemoveNetwork(ctx, s.NetworkName(service)); err != nil {
		return fmt.Errorf("remove the network of service %s: %w", service, err)
	}
	return nil
}

// reconcileNetworks removes the networks of this owner whose service is
// not configured; those of configured services are kept for their
// instances (ensureNetwork adopts them). Reconcile calls it after it
// removed the leftover containers, which would keep a network in use.
func (s *Scaler) reconcileNetworks(ctx context.Context) error {
	nw := s.networks()
	if nw == nil {
		return nil
	}
	list, err := nw.ListNetworks(ctx)
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	s.net.mu.Lock()
	s.net.subnets = subnetsOf(list)
	s.net.mu.Unlock()
	var errs []error
	for _, n := range list {
		if n.Labels[LabelOwner] != s.opts.Owner || s.Service(n.Labels[LabelService]) != nil {
			continue
		}
		s.log.Info("removing leftover network", zap.String("network", n.Name))
		if err := s.removeNetwork(ctx, n.Labels[LabelService]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sandbox fences off and shapes a started instance's network (see
// shape.go). It runs before the instance is marked ready, on the start's
// (or adoption's) goroutine, never on the request path.
func (s *Scaler) sandbox(ctx context.Context, cfg ServiceConfig, lim Limits, info ContainerInfo) (InstanceNet, error) {
	in := InstanceNet{Network: info.Network, RateMbit: float64(lim.BandwidthBps) / 1e6}
	if _, ok := s.rt.(Networks); !ok || s.opts.NoNetworkSandbox {
		in.RateMbit, in.Shaping = 0, "not fenced or shaped: the engine is not Podman, or the sandbox is off"
		return in, nil
	}
	setup := netSetup{pid: info.Pid, bps: lim.BandwidthBps, port: cfg.Port}
	if s.host.Rootless {
		if os.Geteuid() != 0 {
			// Entering a rootless container's namespace takes root on the
			// host (or joining Podman's user namespace, which a Go process
			// cannot do once it runs threads).
			in.RateMbit, in.Shaping = 0, "not shaped or fenced: podcell does not run as root"
			return in, nil
		}
	} else {
		n, err := s.ensureNetwork(ctx, cfg.Name)
		if err != nil {
			return in, err
		}
		if info.Network != n.Name {
			return in, fmt.Errorf("the container is on network %q, not the service's %q", info.Network, n.Name)
		}
		setup.bridge = n.Interface
		setup.ifb = ifbFor(s.opts.Owner, cfg.Name, info.Name, info.ID)
		s.net.mu.Lock()
		setup.others = s.net.subnets
		s.net.mu.Unlock()
	}
	how, err := sandboxNetns(setup)
	if err != nil {
		return in, err
	}
	in.Shaping = how
	return in, nil
}

// removeContainer removes a container, and then the IFB device that
// shaped what it sent (shapeIngress), which outlives the container's veth.
// Every removal of an instance's container goes through it.
func (s *Scaler) removeContainer(ctx context.Context, id string) error {
	if err := s.rt.Remove(ctx, id); err != nil {
		return err
	}
	if s.networks() == nil || id == "" {
		return nil
	}
	if err := removeIFB(ifbFor(s.opts.Owner, "", "", id)); err != nil {
		s.log.Warn("cannot remove a removed instance's shaping device; Reconcile will", zap.Error(err))
	}
	return nil
}

// reconcileIFBs removes the IFB devices of this owner whose container is
// not an instance of a configured service: those of containers removed
// while podcell was down, or by a podcell that crashed before it removed
// the device. Reconcile calls it once it adopted what it keeps.
func (s *Scaler) reconcileIFBs() error {
	if s.networks() == nil {
		return nil
	}
	links, err := ifbDevices()
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range links {
		owner, service, name, id, ok := parseIFBAlias(l.Attrs().Alias)
		if !ok || owner != s.opts.Owner {
			continue
		}
		if svc := s.Service(service); svc != nil && svc.known(ContainerInfo{ID: id, Name: name}) {
			continue
		}
		s.log.Info("removing leftover shaping device", zap.String("device", l.Attrs().Name), zap.String("container", name))
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("remove the device %s: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// exitedWhileStarting says whether a container whose network could not be
// set up did so because its process is gone: then it waits (a few seconds
// at most) until Podman reports it exited, so the start fails with the
// app's exit code.
func (s *Scaler) exitedWhileStarting(ctx context.Context, id string, pid int, died <-chan struct{}) bool {
	if _, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil {
		return false // alive: the failure is the network's
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if info, err := s.rt.Inspect(ctx, id); err == nil && hasExited(info.State) {
			return true
		}
		select {
		case <-died:
			return true
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}
