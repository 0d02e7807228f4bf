// Package scaler runs services as Podman containers that scale from zero to a
// maximum by in-flight load and back to zero when idle. It knows nothing of
// HTTP routing: the gateway hands a Service a function (Service.Try), which
// runs with an instance's address, and the Service takes the instance back
// when it returns.
package scaler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Options configure a Scaler.
type Options struct {
	// Owner labels every container, so two podcells on one host (or a test
	// and a real one) never touch each other's. Default "podcell".
	Owner string
	// UserNS is the user namespace mode for rootful Podman: "auto" (default)
	// maps each container's root to its own unprivileged host uid range;
	// "host" runs without a user namespace. Rootless Podman ignores it.
	UserNS string
	// AllowUnenforcedLimits lets services run where the host cannot enforce
	// memory and CPU limits (rootless Podman on cgroup v1). Off by default:
	// such a service is refused.
	AllowUnenforcedLimits bool
	// KeepOnClose leaves instances running when the scaler closes, for the
	// next scaler with the same Owner to adopt.
	KeepOnClose bool
	Logger      *zap.Logger
	// Observer, if set, is told of instance starts, pauses, crashes, scaling
	// and queued requests.
	Observer Observer
	// Expand resolves the env values a service's ExpandEnv names, when
	// each container is created, so a rotated secret reaches the next
	// instances and the config never holds it. An error fails that start
	// (or standby). Nil: a service with ExpandEnv cannot start.
	Expand func(value string) (string, error)
	// StandbyIdle is how long a service keeps its standby container (one
	// created and initialized, not started, which makes the next cold
	// start the app's start only) after an instance of it was last up. A
	// service never used, or not for this long, keeps none: its next cold
	// start creates the container too, and a thousand services at rest do not make Podman
	// list, and keep, a thousand containers. Zero: DefaultStandbyIdle;
	// negative: every service keeps one, used or not.
	StandbyIdle time.Duration
	// CreatedStandby keeps standbys created only, not initialized (see
	// prepareStandby): about 4 MB less per standby, 0.5-0.9 s more per
	// cold start here (benchmarks/results/runtimes-20261130-025245.md).
	CreatedStandby bool
	// BandwidthPerCoreMbit ties an instance's network rate to its memory as
	// CPU is: this many Mbit/s per core (memory_MB/1769), in each
	// direction, unless the service sets its own. Default 200.
	BandwidthPerCoreMbit int
	// NoNetworkSandbox runs every instance on the engine's default
	// network, unfenced and unshaped, as podcell did before services had
	// networks of their own. Only for measuring what the sandbox costs
	// (benchmarks/coldstart); the Caddy app never sets it.
	NoNetworkSandbox bool
	// StartupCPU is the CPU, in cores, an instance starts with until its
	// app answers, for services that set none (default DefaultStartupCPU;
	// negative: no boost). It never exceeds the cores the instance may run
	// on. StartupCPUBudget bounds the boost cores (above the instances' own
	// quotas) of all starting instances together (default: the host's
	// cores); past it an instance starts at its own quota. See boost.go.
	StartupCPU       float64
	StartupCPUBudget float64
}

// DefaultStandbyIdle is how long a service keeps its standby container
// after it was last used.
const DefaultStandbyIdle = 30 * time.Minute

// Scaler owns the services and their containers.
type Scaler struct {
	rt   Runtime
	host HostInfo
	opts Options
	log  *zap.Logger
	obs  Observer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// removing tracks the services RemoveInBackground drains; Close waits.
	removing sync.WaitGroup

	boost    boostBudget
	mu       sync.RWMutex
	services map[string]*Service

	cpuOffset atomic.Int64

	net netState // the services' networks
}

// New probes the host through rt and starts watching container events.
func New(ctx context.Context, rt Runtime, opts Options) (*Scaler, error) {
	if opts.Owner == "" {
		opts.Owner = "podcell"
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.StandbyIdle == 0 {
		opts.StandbyIdle = DefaultStandbyIdle
	}
	if err := CheckUserNS(opts.UserNS); err != nil {
		return nil, err
	}
	// Bounded: a wedged Podman service answers pings but hangs on calls,
	// and Caddy must fail its config load rather than hang with it.
	hctx, cancel := context.WithTimeout(ctx, hostTimeout)
	host, err := rt.Host(hctx)
	cancel()
	if err != nil {
		if hctx.Err() != nil {
			return nil, fmt.Errorf("podman did not answer an info call within %s: the service may be wedged (restart it; scripts/setup-host.sh does): %w", hostTimeout, err)
		}
		return nil, err
	}
	if opts.UserNS == "" {
		opts.UserNS = "auto"
	}
	if opts.BandwidthPerCoreMbit == 0 {
		opts.BandwidthPerCoreMbit = DefaultBandwidthPerCoreMbit
	}
	if err := CheckBandwidth("bandwidth_per_core", opts.BandwidthPerCoreMbit); err != nil {
		return nil, err
	}
	if opts.StartupCPU > MaxMemoryMB/MBPerCore {
		return nil, fmt.Errorf("startup_cpu %g is too large: use at most %d cores, or off", opts.StartupCPU, MaxMemoryMB/MBPerCore)
	}
	if opts.StartupCPU == 0 {
		opts.StartupCPU = DefaultStartupCPU
	}
	if opts.StartupCPUBudget == 0 {
		opts.StartupCPUBudget = float64(max(host.CPUs, 1))
	}
	s := &Scaler{rt: rt, host: host, opts: opts, log: opts.Logger, obs: opts.Observer, services: map[string]*Service{}}
	s.boost.left = int64(max(opts.StartupCPUBudget, 0) * cpuPeriod)
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(1)
	go s.watchEvents()
	if !host.LimitsEnforced() {
		s.log.Warn("this host cannot enforce memory and CPU limits (rootless Podman on cgroup v1)",
			zap.Bool("allow_unenforced_limits", opts.AllowUnenforcedLimits))
	}
	return s, nil
}

const hostTimeout = 30 * time.Second

// Host is what the scaler found out about the container host.
func (s *Scaler) Host() HostInfo { return s.host }

// Runtime is the container runtime the scaler uses.
func (s *Scaler) Runtime() Runtime { return s.rt }

// Apply adds the service or updates it to cfg. A changed image, command, env
// or limits rolls its instances over to a new revision without dropping
// requests; scaling settings apply at once; the config it runs already
// changes nothing (a config reload applies every service it declares).
func (s *Scaler) Apply(cfg ServiceConfig) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := CheckServiceBandwidth("bandwidth", cfg.BandwidthMbit, s.opts.BandwidthPerCoreMbit); err != nil {
		return nil, fmt.Errorf("service %s: %w", cfg.Name, err)
	}
	if !s.host.LimitsEnforced() && !s.opts.AllowUnenforcedLimits {
		return nil, fmt.Errorf("service %s: this host runs rootless Podman on cgroup v1, which ignores memory and CPU limits; "+
			"use rootful Podman (podcell runs it with userns=auto), move to a cgroup v2 host, or set allow_unenforced_limits to run without limits", cfg.Name)
	}
	lim, err := LimitsFor(cfg.MemoryMB, cfg.TmpMB, cfg.PidsLimit)
	if err != nil {
		return nil, err
	}
	lim.BandwidthBps = BandwidthFor(cfg.MemoryMB, cfg.BandwidthMbit, s.opts.BandwidthPerCoreMbit)
	if cfg.PauseAfter > 0 && !s.host.CanPause() {
		s.log.Warn("this host cannot pause containers (rootless Podman on cgroup v1): idle instances are stopped after idle_timeout instead",
			zap.String("service", cfg.Name))
		cfg.PauseAfter = -1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if svc := s.services[cfg.Name]; svc != nil {
		svc.update(cfg, lim)
		return svc, nil
	}
	svc := &Service{sc: s, log: s.log, name: cfg.Name, cfg: cfg, rev: cfg.Revision(), limits: lim,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	svc.stopping, svc.cancelStarting = context.WithCancel(s.ctx)
	s.services[cfg.Name] = svc
	go svc.run(svc.stopping)
	svc.kickLoop()
	return svc, nil
}

// Service returns the named service, or nil.
func (s *Scaler) Service(name string) *Service {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.services[name]
}

// Services lists the services by name.
func (s *Scaler) Services() []*Service {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Service, 0, len(s.services))
	for _, svc := range s.services {
		out = append(out, svc)
	}
	return out
}

// Remove drains and removes a service's instances and forgets it.
func (s *Scaler) Remove(ctx context.Context, name string) error {
	s.mu.Lock()
	svc := s.services[name]
	delete(s.services, name)
	s.mu.Unlock()
	if svc == nil {
		return fmt.Errorf("service %q does not exist", name)
	}
	return svc.shutdown(ctx, false)
}

// RemoveInBackground forgets a service at once, as Remove does (a new
// Apply of the name makes a new service), and drains and removes its
// instances in the background: a drain_timeout the admin API set to an
// hour must not hold up the caller (a DELETE holding the lock that config
// reloads and other API calls need). The drain gets its drain_timeout;
// the engine calls after it a minute more. Close waits for these removals.
func (s *Scaler) RemoveInBackground(name string) error {
	s.mu.Lock()
	svc := s.services[name]
	delete(s.services, name)
	if svc != nil {
		s.removing.Add(1)
	}
	s.mu.Unlock()
	if svc == nil {
		return fmt.Errorf("service %q does not exist", name)
	}
	svc.mu.Lock()
	timeout := svc.cfg.DrainTimeout + svc.cfg.StopGrace + time.Minute
	svc.mu.Unlock()
	go func() {
		defer s.removing.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), timeout)
		defer cancel()
		if err := svc.shutdown(ctx, false); err != nil {
			s.log.Warn("removing a service", zap.String("service", name), zap.Error(err))
		}
	}()
	return nil
}

// Close stops every service. Their containers are removed unless the
// scaler was told to keep them; waiting requests fail with ErrClosed.
func (s *Scaler) Close(ctx context.Context) error {
	s.mu.Lock()
	svcs := s.services
	s.services = map[string]*Service{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, 0)
	var emu sync.Mutex
	for _, svc := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.shutdown(ctx, s.opts.KeepOnClose); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	removed := make(chan struct{})
	go func() { s.removing.Wait(); close(removed) }()
	select {
	case <-removed:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("services removed in the background still draining: %w", ctx.Err()))
	}
	s.cancel()
	s.wg.Wait()
	return errors.Join(errs...)
}

// shutdown fails waiters, stops the loop and, unless keep, stops and
// removes every instance (in-flight requests get their stop grace).
func (svc *Service) shutdown(ctx context.Context, keep bool) error {
	svc.mu.Lock()
	svc.closed = true
	svc.failQueueLocked(ErrClosed)
	drain := svc.cfg.DrainTimeout
	svc.mu.Unlock()
	svc.cancelStarting()
	// Let in-flight requests finish, as scale-in does.
	for deadline := time.Now().Add(drain); time.Now().Before(deadline) && ctx.Err() == nil; {
		svc.mu.Lock()
		n := svc.inflight
		svc.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Wait for engine calls in flight, so every container they made is
	// known before we look.
	opsDone := make(chan struct{})
	go func() { svc.ops.Wait(); close(opsDone) }()
	select {
	case <-opsDone:
	case <-ctx.Done():
		return fmt.Errorf("service %s: engine calls still running at shutdown: %w", svc.name, ctx.Err())
	}

	svc.mu.Lock()
	var ids []string
	for _, inst := range svc.instances {
		if inst.id == "" {
			continue
		}
		if keep && (inst.state == stReady || inst.state == stPaused) {
			continue
		}
		ids = append(ids, inst.id)
		inst.state = stStopping
	}
	grace := svc.cfg.StopGrace
	svc.noteScaleLocked()
	svc.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc.sc.rt.Stop(ctx, id, grace)
			errs[i] = svc.sc.removeContainer(ctx, id)
			svc.sc.obs.InstanceRemoved(svc.name, id)
		}()
	}
	wg.Wait()
	if !keep && errors.Join(errs...) == nil {
		if err := svc.sc.removeNetwork(ctx, svc.name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Scaler) containerName(service string) string {
	var b [4]byte
	rand.Read(b[:])
	return s.opts.Owner + "-" + service + "-" + hex.EncodeToString(b[:])
}

// spec is the container an instance runs in. It resolves the env values
// cfg.ExpandEnv names; an error names the variable, never a value.
func (s *Scaler) spec(inst *instance, cfg ServiceConfig, lim Limits) (ContainerSpec, error) {
	env := make(map[string]string, len(cfg.Env)+1)
	for k, v := range cfg.Env {
		env[k] = v
	}
	for _, k := range cfg.ExpandEnv {
		if s.opts.Expand == nil {
			return ContainerSpec{}, fmt.Errorf("env %s: no resolver for its placeholders", k)
		}
		v, err := s.opts.Expand(cfg.Env[k])
		if err != nil {
			return ContainerSpec{}, fmt.Errorf("env %s: %w", k, err)
		}
		env[k] = v
	}
	env["PORT"] = strconv.Itoa(cfg.Port)
	cs := ContainerSpec{
		Name:    inst.name,
		Image:   cfg.Image,
		Command: cfg.Command,
		Env:     env,
		Labels: map[string]string{
			LabelOwner:    s.opts.Owner,
			LabelService:  cfg.Name,
			LabelRevision: inst.revision,
			LabelPort:     strconv.Itoa(cfg.Port),
		},
		Port:        cfg.Port,
		Publish:     s.host.Rootless,
		Limits:      lim,
		Cpuset:      lim.cpuset(s.host.CPUs, int(s.cpuOffset.Add(1))),
		StopTimeout: cfg.StopGrace,
		Network:     s.NetworkName(cfg.Name),
	}
	cs.Limits.StartCPUQuota = lim.startQuota(s.startupCores(cfg), s.visibleCPUs(lim))
	if !s.host.Rootless && s.opts.UserNS == "auto" {
		cs.UserNS = "auto"
	}
	return cs, nil
}

// ContainerSpec returns the container an instance of cfg would run in, so
// tools can make the very same container outside the scaler (the
// benchmarks' bare-Podman baselines). Each call takes the next cpuset of the
// rotation, as an instance would.
func (s *Scaler) ContainerSpec(cfg ServiceConfig) (ContainerSpec, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return ContainerSpec{}, err
	}
	lim, err := LimitsFor(cfg.MemoryMB, cfg.TmpMB, cfg.PidsLimit)
	if err != nil {
		return ContainerSpec{}, err
	}
	lim.BandwidthBps = BandwidthFor(cfg.MemoryMB, cfg.BandwidthMbit, s.opts.BandwidthPerCoreMbit)
	inst := &instance{name: s.containerName(cfg.Name), revision: cfg.Revision()}
	return s.spec(inst, cfg, lim)
}

// prepareStandby initializes a created standby (Runtime.Init: its network
// namespace, its address on the service's network and the OCI runtime's
// process waiting to exec the app) and fences and shapes its network, so
// that its cold start is the start of the app and nothing else. Measured
// on Podman 4.3 here, init takes about 300 ms of a created container's
// 400 ms from start to first answer; what it keeps costs about 4 MB
// (runc's waiting process and conmon), and no CPU. See docs/configuration.md,
// Services at rest.
func (s *Scaler) prepareStandby(ctx context.Context, id string, cfg ServiceConfig, lim Limits) (ContainerInfo, InstanceNet, error) {
	if err := s.rt.Init(ctx, id); err != nil {
		return ContainerInfo{}, InstanceNet{}, fmt.Errorf("init: %w", err)
	}
	info, err := s.rt.Inspect(ctx, id)
	if err != nil {
		return ContainerInfo{}, InstanceNet{}, err
	}
	if info.State != StateInitialized || info.Addr == "" || info.Pid == 0 {
		return ContainerInfo{}, InstanceNet{}, fmt.Errorf("after init the container is %s with address %q, pid %d", info.State, info.Addr, info.Pid)
	}
	s.refreshSubnets(ctx) // off the request path: see netState.subnets
	in, err := s.sandbox(ctx, cfg, lim, info)
	return info, in, err
}

// startContainer creates (unless a standby exists) and starts inst's
// container and waits until its app answers. It returns the app's address.
func (s *Scaler) startContainer(ctx context.Context, svc *Service, inst *instance, cfg ServiceConfig, lim Limits) (string, error) {
	// Engine calls are not cut short by shutdown (a half-done create would
	// leave a container nobody knows); only the wait for readiness is.
	api, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.StartTimeout)
	defer cancel()
	svc.mu.Lock()
	id, prep, in := inst.id, inst.prep, inst.net
	svc.mu.Unlock()
	fail := func(reason string, err error) (string, error) {
		se := &StartError{Service: cfg.Name, Reason: reason, ExitCode: -1, Err: err}
		if id != "" {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if info, ierr := s.rt.Inspect(lctx, id); ierr == nil && hasExited(info.State) {
				se.ExitCode = info.ExitCode
				if info.OOMKilled {
					se.Reason = "the app ran out of memory while starting"
				}
			}
			se.Logs, _ = s.rt.Logs(lctx, id, 20)
		}
		return "", se
	}
	if id == "" {
		cs, err := s.spec(inst, cfg, lim)
		if err != nil {
			return fail("the env could not be resolved", err)
		}
		if id, err = s.create(api, cs); err != nil {
			return fail("the container could not be created", err)
		}
		svc.mu.Lock()
		inst.id = id
		svc.mu.Unlock()
	}
	// The boost: reserved from the budget before the start; without a
	// reservation the instance is lowered right after it.
	sq := lim.startQuota(s.startupCores(cfg), s.visibleCPUs(lim))
	boosted := false
	if sq > 0 {
		if boosted = s.boost.take(sq - lim.CPUQuota); boosted {
			defer s.boost.give(sq - lim.CPUQuota)
		} else {
			svc.Stats.BoostDenied.Add(1)
		}
	}
	if err := s.rt.Start(api, id); err != nil {
		return fail("the container could not be started", err)
	}
	var info ContainerInfo
	var err error
	if prep != nil {
		// No Inspect (30-70 ms on a loaded host): the app has the pid and
		// address runc's waiting process had, as exec keeps both. An app
		// that exits at once is seen by the probe's liveness check and
		// the died event, as one that exits later is.
		info = *prep
		info.State = StateRunning
	} else if info, err = s.rt.Inspect(api, id); err != nil {
		return fail("the container could not be inspected", err)
	}
	if sq > 0 && !boosted && info.State == StateRunning {
		if err := s.rt.SetCPU(api, id, info.Pid, lim.CPUQuota, lim.CPUPeriod); err != nil {
			return fail("the startup CPU boost could not be lowered to the tier's CPU", err)
		}
	}
	if info.State != StateRunning {
		return fail(fmt.Sprintf("the app exited at once (code %d)", info.ExitCode), nil)
	}
	if info.Addr == "" {
		return fail("the container has no reachable address", nil)
	}
	// Before the instance takes traffic: a request must never see it
	// unfenced or unshaped. A prepared standby already is, at the rate its
	// revision has (memory and bandwidth are part of the revision, and
	// bandwidth_per_core is fixed for the scaler's life).
	if prep == nil {
		in, err = s.sandbox(api, cfg, lim, info)
	}
	if err != nil {
		// An app that exits at once takes its network namespace with it:
		// that is a crash, reported with its exit code, not a network
		// failure.
		if s.exitedWhileStarting(api, id, info.Pid, inst.died) {
			return fail("the app exited while starting", nil)
		}
		return fail("the instance's network could not be fenced off and shaped", err)
	}
	svc.mu.Lock()
	inst.net = in
	svc.mu.Unlock()
	s.obs.InstanceStarting(cfg.Name, id)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	hint := s.watchSlowStart(wctx, cfg, id, info.Pid)
	p := prober{addr: info.Addr, path: cfg.HealthPath, http: cfg.HealthPath != "" || s.host.Rootless}
	err = p.wait(ctx, inst.died, func(ctx context.Context) bool {
		info, err := s.rt.Inspect(ctx, id)
		return err == nil && info.State == StateRunning
	})
	switch {
	case err == nil:
		// The tier's CPU before the first request: an instance that kept
		// the boost would get more than its memory pays for. Written even
		// when this start took no boost, as the container may have been
		// created with one (a standby made before the config changed, or
		// by an earlier run and adopted).
		if sq > 0 || s.canBoost() {
			if err := s.rt.SetCPU(api, id, info.Pid, lim.CPUQuota, lim.CPUPeriod); err != nil {
				if sq > 0 {
					return fail("the startup CPU boost could not be lowered to the tier's CPU", err)
				}
				s.log.Warn("cannot set an instance's CPU quota", zap.String("service", cfg.Name), zap.Error(err))
			}
		}
		return info.Addr, nil
	case errors.Is(err, errExited):
		return fail("the app exited while starting", nil)
	case errors.Is(err, context.DeadlineExceeded):
		reason := fmt.Sprintf("the app did not answer on port %d within start_timeout %s", cfg.Port, cfg.StartTimeout)
		if h := hint.get(); h != "" {
			reason += ": " + h
		}
		return fail(reason, nil)
	default:
		return fail("the app did not become ready", err)
	}
}

// watchEvents follows container events for our containers, reconnecting
// if the stream breaks. After each (re)connect it re-lists containers so
// deaths missed while disconnected are noticed.
func (s *Scaler) watchEvents() {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for s.ctx.Err() == nil {
		events, err := s.rt.Events(s.ctx, LabelOwner, s.opts.Owner)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("cannot follow podman events; retrying", zap.Error(err), zap.Duration("in", backoff))
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		s.resync()
		for ev := range events {
			if ev.Action != "died" {
				continue
			}
			if svc := s.Service(ev.Labels[LabelService]); svc != nil {
				svc.onDied(ev.ID, ev.ExitCode)
			}
		}
	}
}

// resync treats every instance whose container is gone or exited as died.
func (s *Scaler) resync() {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	list, err := s.rt.List(ctx, LabelOwner, s.opts.Owner)
	if err != nil {
		s.log.Warn("cannot list containers", zap.Error(err))
		return
	}
	state := map[string]ContainerInfo{}
	for _, c := range list {
		state[c.ID] = c
	}
	for _, svc := range s.Services() {
		svc.mu.Lock()
		var dead []string
		for _, inst := range svc.instances {
			if inst.id == "" || inst.state == stStandby || inst.state == stStopping || inst.state == stStarting {
				continue
			}
			if c, ok := state[inst.id]; !ok || hasExited(c.State) {
				dead = append(dead, inst.id)
			}
		}
		svc.mu.Unlock()
		for _, id := range dead {
			svc.onDied(id, state[id].ExitCode)
		}
	}
}

// Reconcile deals with containers left by an earlier run with the same
// Owner: those of a known service and its current revision are adopted
// (running ones as ready, paused ones as paused, created ones as standby);
// every other one is stopped and removed. Call it once the services of the
// configuration are applied.
func (s *Scaler) Reconcile(ctx context.Context) error {
	list, err := s.rt.List(ctx, LabelOwner, s.opts.Owner)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	var errs []error
	for _, c := range list {
		svc := s.Service(c.Labels[LabelService])
		if svc != nil && svc.adopt(ctx, c) {
			continue
		}
		if svc != nil && svc.known(c) {
			continue
		}
		s.log.Info("removing leftover container", zap.String("container", c.Name), zap.String("state", c.State))
		s.rt.Stop(ctx, c.ID, time.Second)
		if err := s.removeContainer(ctx, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.Name, err))
		}
	}
	if err := s.reconcileNetworks(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.reconcileIFBs(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// known says whether c is one of svc's instances. By name too: a container
// whose create call has not returned yet has no id on our side, but it is
// already in Podman's list, and removing it would break that instance.
func (svc *Service) known(c ContainerInfo) bool {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.knownLocked(c)
}

func (svc *Service) knownLocked(c ContainerInfo) bool {
	if svc.find(c.ID) != nil {
		return true
	}
	for _, inst := range svc.instances {
		if inst.name != "" && inst.name == c.Name {
			return true
		}
	}
	return false
}

// adopt takes over a container from an earlier run if it runs the current
// revision and still answers.
func (svc *Service) adopt(ctx context.Context, c ContainerInfo) bool {
	svc.mu.Lock()
	rev, cfg, lim := svc.rev, svc.cfg, svc.limits
	if svc.knownLocked(c) || c.Labels[LabelRevision] != rev || svc.closed || !svc.sc.onServiceNetwork(svc.name, c) {
		svc.mu.Unlock()
		return false
	}
	svc.mu.Unlock()

	info, err := svc.sc.rt.Inspect(ctx, c.ID)
	if err != nil {
		return false
	}
	inst := &instance{id: c.ID, name: info.Name, revision: rev, addr: info.Addr, lastActive: time.Now(), died: make(chan struct{})}
	switch info.State {
	case StateRunning:
		p := prober{addr: info.Addr, path: cfg.HealthPath, http: cfg.HealthPath != "" || svc.sc.host.Rootless}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.wait(pctx, inst.died, nil)
		cancel()
		if err != nil || info.Addr == "" {
			return false
		}
		inst.state = stReady
	case StatePaused:
		if info.Addr == "" {
			return false
		}
		inst.state = stPaused
	case StateCreated, StateInitialized:
		inst.state = stStandby
	default:
		return false
	}
	if inst.state != stStandby {
		// Routes and qdiscs live as long as the namespace, but the rate
		// may have changed with bandwidth_per_core: set them again.
		in, err := svc.sc.sandbox(ctx, cfg, lim, info)
		if err != nil {
			svc.log.Warn("cannot set up an earlier run's instance's network; replacing it", zap.String("container", info.Name), zap.Error(err))
			return false
		}
		inst.net = in
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if inst.state == stStandby {
		for _, other := range svc.instances {
			if other.state == stStandby && other.revision == rev {
				return false // one standby is enough
			}
		}
	}
	svc.instances = append(svc.instances, inst)
	svc.usedAt = time.Now() // in use in the earlier run: it keeps a standby
	svc.noteScaleLocked()
	svc.log.Info("adopted container from an earlier run", zap.String("container", inst.name), zap.String("state", inst.state.String()))
	if inst.state == stReady {
		svc.serveQueueLocked(inst, WakeNone)
	}
	return true
}
