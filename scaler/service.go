package scaler

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Service runs the instances of one service. Acquire and Lease.Release are the
// request path: they take only this service's lock, never call Podman, and
// allocate nothing unless the request has to wait.
type Service struct {
	sc   *Scaler
	log  *zap.Logger
	name string // never changes

	mu        sync.Mutex
	cfg       ServiceConfig
	rev       string
	limits    Limits
	instances []*instance // oldest first
	queue     list.List   // of *waiter, FIFO
	inflight  int
	peak      int // highest demand since the last tick
	up        int // instances up when the observer was last told
	win       window
	closed    bool

	// After a failed start, requests fail fast with lastErr until retryAt,
	// instead of starting a crash-looping image again for each of them.
	lastErr *StartError
	retryAt time.Time
	backoff time.Duration
	// After a failed standby create (a missing image, say), the next one
	// waits standbyBackoff, doubling up to maxStandbyBackoff; without it the
	// loop retried every tick (150 creates in 3 s with pause_after 200ms).
	standbyRetryAt time.Time
	standbyBackoff time.Duration

	kick chan struct{}
	done chan struct{}
	// ops tracks the goroutines that talk to the engine, so shutdown can
	// wait for them and no container is created after it looked.
	ops sync.WaitGroup
	// stopping ends probes of starting instances at shutdown.
	stopping       context.Context
	cancelStarting context.CancelFunc

	Stats Stats
}

// Stats are counters of what a service's instances went through.
type Stats struct {
	ColdStarts   atomic.Int64
	Resumes      atomic.Int64
	StartFails   atomic.Int64
	Crashes      atomic.Int64
	OOMKills     atomic.Int64
	Pauses       atomic.Int64
	Stops        atomic.Int64
	QueueFull    atomic.Int64
	QueueTimeout atomic.Int64
}

type instance struct {
	id         string
	name       string
	revision   string
	state      instState
	addr       string
	addrAny    any // addr as an interface value, boxed once (see Lease.Upstream)
	inflight   int
	lastActive time.Time
	drainSince time.Time
	died       chan struct{} // closed when the engine reports the container died
	exitCode   int
	noPause    bool // a pause failed: do not try again
	net        InstanceNet
}

type waiter struct {
	ch     chan result // buffered: delivery never blocks the deliverer
	elem   *list.Element
	queued bool
}

type result struct {
	inst *instance
	wake Wake
	err  error
}

// Wake says what a request waited for.
type Wake int

const (
	WakeNone   Wake = iota // it had an instance at once, or waited for a free slot
	WakeStart              // it waited for a cold start
	WakeResume             // it waited for a paused instance to resume
)

func (w Wake) String() string {
	return [...]string{"none", "start", "resume"}[w]
}

// Lease is one request's hold on an instance. Release it exactly once.
type Lease struct {
	svc  *Service
	inst *instance
	// Addr is host:port of the instance's app.
	Addr string
	// Upstream is Addr as an interface value, made once per instance, so a
	// caller that stores it in an interface (Caddy's replacer) does not
	// allocate per request.
	Upstream any
	// Waited is how long the request queued; zero if it did not.
	Waited time.Duration
	Wake   Wake
}

// Name is the service's name.
func (s *Service) Name() string { return s.name }

// Config is the service's current configuration.
func (s *Service) Config() ServiceConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Acquire returns an instance with spare capacity, starting or resuming one
// if needed and waiting for it in a bounded FIFO queue. Errors: ErrQueueFull,
// ErrQueueTimeout, ErrClosed, a *StartError, or ctx's error.
func (s *Service) Acquire(ctx context.Context) (Lease, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Lease{}, ErrClosed
	}
	now := time.Now()
	if s.queue.Len() == 0 {
		if inst := s.pickLocked(); inst != nil {
			inst.inflight++
			s.inflight++
			inst.lastActive = now
			s.notePeakLocked()
			s.mu.Unlock()
			return Lease{svc: s, inst: inst, Addr: inst.addr, Upstream: inst.addrAny}, nil
		}
	}
	if s.lastErr != nil && now.Before(s.retryAt) && !s.anyServingLocked() {
		err := s.lastErr
		s.mu.Unlock()
		s.sc.obs.Queued(s.name, 0, WakeNone, QueueFailed)
		return Lease{}, err
	}
	if s.queue.Len() >= s.cfg.QueueSize {
		s.mu.Unlock()
		s.Stats.QueueFull.Add(1)
		s.sc.obs.Queued(s.name, 0, WakeNone, QueueFull)
		return Lease{}, ErrQueueFull
	}
	w := &waiter{ch: make(chan result, 1), queued: true}
	w.elem = s.queue.PushBack(w)
	s.notePeakLocked()
	s.scaleUpLocked()
	timeout := s.cfg.QueueTimeout
	s.mu.Unlock()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case r := <-w.ch:
		return s.leaseFrom(r, now)
	case <-timer.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	if w.queued {
		s.queue.Remove(w.elem)
		w.queued = false
		s.mu.Unlock()
		if err == ErrQueueTimeout {
			s.Stats.QueueTimeout.Add(1)
			s.sc.obs.Queued(s.name, time.Since(now), WakeNone, QueueTimeout)
		} else {
			s.sc.obs.Queued(s.name, time.Since(now), WakeNone, QueueCanceled)
		}
		return Lease{}, err
	}
	s.mu.Unlock()
	// Delivered while we gave up: the result is in the channel.
	r := <-w.ch
	if r.err == nil && ctx.Err() != nil {
		s.release(r.inst)
		s.sc.obs.Queued(s.name, time.Since(now), r.wake, QueueCanceled)
		return Lease{}, ctx.Err()
	}
	return s.leaseFrom(r, now)
}

// leaseFrom turns what a queued request was handed into its lease.
func (s *Service) leaseFrom(r result, since time.Time) (Lease, error) {
	waited := time.Since(since)
	if r.err != nil {
		s.sc.obs.Queued(s.name, waited, r.wake, QueueFailed)
		return Lease{}, r.err
	}
	s.sc.obs.Queued(s.name, waited, r.wake, QueueServed)
	return Lease{svc: s, inst: r.inst, Addr: r.inst.addr, Upstream: r.inst.addrAny, Waited: waited, Wake: r.wake}, nil
}

// Release gives the request's slot back.
func (l Lease) Release() {
	if l.svc != nil {
		l.svc.release(l.inst)
	}
}

// Refused gives the request's slot back and reports that the instance
// refused the connection. A ready instance that accepts no connection has
// exited (before Podman's event reached us) or is going: it takes no more
// requests and the loop replaces it. Nothing reached the app, so the
// caller may try again with another lease.
func (l Lease) Refused() {
	if l.svc != nil {
		l.svc.refused(l.inst)
	}
}

func (s *Service) refused(inst *instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst.inflight--
	s.inflight--
	if inst.state == stReady {
		s.log.Warn("instance refused a connection; it takes no more requests", zap.String("service", s.name), zap.String("container", inst.name))
		// Draining, not stopped: if it did exit, its died event still
		// records the crash; if not, the loop stops it once it is empty.
		inst.state = stDraining
		inst.drainSince = time.Now()
		if s.queue.Len() > 0 {
			s.scaleUpLocked()
		}
	}
}

func (s *Service) release(inst *instance) {
	s.mu.Lock()
	inst.inflight--
	s.inflight--
	inst.lastActive = time.Now()
	switch inst.state {
	case stReady:
		s.serveQueueLocked(inst, WakeNone)
	case stDraining:
		if inst.inflight == 0 {
			s.stopLocked(inst)
		}
	}
	s.mu.Unlock()
}

// pickLocked returns the ready instance with the fewest in-flight requests
// and spare capacity; ties go to the oldest, so light traffic keeps landing
// on one instance and the others can go idle. During a rollover the current
// revision goes first: a new env or image serves as soon as it is ready.
func (s *Service) pickLocked() *instance {
	var best *instance
	bestCurrent := false
	for _, inst := range s.instances {
		if inst.state != stReady || inst.inflight >= s.cfg.Concurrency {
			continue
		}
		current := inst.revision == s.rev
		if best == nil || (current && !bestCurrent) || (current == bestCurrent && inst.inflight < best.inflight) {
			best, bestCurrent = inst, current
		}
	}
	return best
}

func (s *Service) notePeakLocked() {
	if d := s.inflight + s.queue.Len(); d > s.peak {
		s.peak = d
	}
}

// serveQueueLocked hands inst's spare capacity to waiters, oldest first.
func (s *Service) serveQueueLocked(inst *instance, wake Wake) {
	for s.queue.Len() > 0 && inst.inflight < s.cfg.Concurrency {
		w := s.queue.Remove(s.queue.Front()).(*waiter)
		w.queued = false
		inst.inflight++
		s.inflight++
		inst.lastActive = time.Now()
		w.ch <- result{inst: inst, wake: wake}
	}
}

func (s *Service) failQueueLocked(err error) {
	for s.queue.Len() > 0 {
		w := s.queue.Remove(s.queue.Front()).(*waiter)
		w.queued = false
		w.ch <- result{err: err}
	}
}

// scaleUpLocked resumes or starts instances so queued requests get served.
func (s *Service) scaleUpLocked() {
	if s.closed {
		return
	}
	serving, total := 0, 0
	var paused []*instance
	for _, inst := range s.instances {
		switch inst.state {
		case stReady, stStarting, stResuming, stPausing:
			serving++
			total++
		case stPaused:
			paused = append(paused, inst)
			total++
		}
	}
	resume, start := scaleUp(s.cfg.Concurrency, s.cfg.MaxInstances, s.inflight+s.queue.Len(), serving, len(paused), total)
	if s.lastErr != nil && time.Now().Before(s.retryAt) {
		start = 0 // the last start failed: no new one until the backoff ends
	}
	// Resume the most recently active first: its caches are warmest.
	for i := len(paused) - 1; i >= 0 && resume > 0; i-- {
		s.resumeLocked(paused[i])
		resume--
	}
	s.startLocked(start)
	s.noteScaleLocked()
}

// noteScaleLocked tells the observer when the number of instances up changed.
func (s *Service) noteScaleLocked() {
	n := 0
	for _, inst := range s.instances {
		if isUp(inst.state) {
			n++
		}
	}
	if n != s.up {
		s.sc.obs.Scaled(s.name, s.up, n)
		s.up = n
	}
}

// startLocked starts n instances, using the standby container if there is one.
func (s *Service) startLocked(n int) {
	for ; n > 0; n-- {
		var inst *instance
		for _, c := range s.instances {
			if c.state == stStandby && c.revision == s.rev && c.id != "" {
				inst = c
				break
			}
		}
		if inst == nil {
			inst = &instance{revision: s.rev, name: s.sc.containerName(s.cfg.Name)}
			s.instances = append(s.instances, inst)
		} else {
			// Keep the list in start order: move the standby to the end.
			s.removeLocked(inst)
			s.instances = append(s.instances, inst)
		}
		inst.state = stStarting
		inst.died = make(chan struct{})
		cfg, lim := s.cfg, s.limits
		s.spawn(func() { s.runStart(inst, cfg, lim) })
	}
}

func (s *Service) resumeLocked(inst *instance) {
	inst.state = stResuming
	s.spawn(func() { s.runResume(inst) })
}

func (s *Service) stopLocked(inst *instance) {
	if inst.state == stStopping {
		return
	}
	inst.state = stStopping
	grace := s.cfg.StopGrace
	s.spawn(func() { s.runStop(inst, grace) })
}

func (s *Service) removeLocked(inst *instance) {
	for i, c := range s.instances {
		if c == inst {
			s.instances = append(s.instances[:i], s.instances[i+1:]...)
			return
		}
	}
}

func (s *Service) find(id string) *instance {
	for _, inst := range s.instances {
		if inst.id == id {
			return inst
		}
	}
	return nil
}

// tickEvery is how often the policy runs: fine enough for the shortest of the
// service's timers, coarse enough to cost nothing.
func (s *Service) tickEvery() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.cfg.StableWindow
	if s.cfg.PauseAfter > 0 {
		t = min(t, s.cfg.PauseAfter)
	}
	t = min(t, s.cfg.IdleTimeout, s.cfg.DrainTimeout) / 10
	return max(20*time.Millisecond, min(t, time.Second))
}

func (s *Service) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.tickEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
			t.Reset(s.tickEvery())
		}
		s.tick(time.Now())
	}
}

// spawn runs f in the background as an engine operation of this service.
// Callers hold s.mu. Once the service is closed nothing new is spawned
// (shutdown waits for the running ones, then removes every container it
// knows), so Add never races with shutdown's Wait.
func (s *Service) spawn(f func()) {
	if s.closed {
		return
	}
	s.ops.Add(1)
	go func() {
		defer s.ops.Done()
		f()
	}()
}

func (s *Service) kickLoop() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) tick(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.win.observe(now, s.peak, s.cfg.StableWindow)
	s.peak = s.inflight + s.queue.Len()
	peak, full := s.win.max(now, s.cfg.StableWindow)

	vs := make([]view, len(s.instances))
	for i, inst := range s.instances {
		vs[i] = view{state: inst.state, inflight: inst.inflight, lastActive: inst.lastActive,
			drainSince: inst.drainSince, current: inst.revision == s.rev, noPause: inst.noPause}
	}
	d := decide(now, s.cfg, vs, peak, full)
	insts := append([]*instance(nil), s.instances...)
	for _, i := range d.pause {
		insts[i].state = stPausing
		inst := insts[i]
		s.spawn(func() { s.runPause(inst) })
	}
	for _, i := range d.drain {
		insts[i].state = stDraining
		insts[i].drainSince = now
		if insts[i].inflight == 0 {
			s.stopLocked(insts[i])
		}
	}
	for _, i := range d.stop {
		s.stopLocked(insts[i])
	}
	s.startLocked(d.start)
	if s.queue.Len() > 0 {
		s.scaleUpLocked()
	}
	s.ensureStandbyLocked()
	s.noteScaleLocked()
}

// maxStandbyBackoff caps the wait between failed standby creates.
const maxStandbyBackoff = time.Minute

// ensureStandbyLocked keeps one created-but-not-started container of the
// current revision, so a cold start is only a start: creating a container
// costs about as much as starting it.
func (s *Service) ensureStandbyLocked() {
	if s.standbyBackoff > 0 && time.Now().Before(s.standbyRetryAt) {
		return
	}
	for _, inst := range s.instances {
		if inst.state == stStandby && inst.revision == s.rev {
			return
		}
		// Not while an instance starts: a create beside a start slows the
		// start (about +3 % here); runStart kicks the loop when it is done.
		if inst.state == stStarting {
			return
		}
	}
	inst := &instance{state: stStandby, revision: s.rev, name: s.sc.containerName(s.cfg.Name)}
	s.instances = append(s.instances, inst)
	cfg, lim := s.cfg, s.limits
	s.spawn(func() { s.runCreateStandby(inst, cfg, lim) })
}

func (s *Service) runCreateStandby(inst *instance, cfg ServiceConfig, lim Limits) {
	ctx, cancel := context.WithTimeout(s.sc.ctx, cfg.StartTimeout)
	defer cancel()
	cs, err := s.sc.spec(inst, cfg, lim)
	var id string
	if err == nil {
		id, err = s.sc.create(ctx, cs)
	}
	s.mu.Lock()
	if err != nil {
		s.removeLocked(inst)
		first := s.standbyBackoff == 0
		s.standbyBackoff = min(max(2*s.standbyBackoff, time.Second), maxStandbyBackoff)
		s.standbyRetryAt = time.Now().Add(s.standbyBackoff)
		s.mu.Unlock()
		if first && s.sc.ctx.Err() == nil {
			// One report per streak of failures: the next ones only retry.
			s.log.Warn("cannot prepare standby container; retrying with backoff", zap.String("service", cfg.Name),
				zap.Error(err), zap.Duration("max_backoff", maxStandbyBackoff))
			s.sc.obs.InstanceStartFailed(s.name, "", &StartError{Service: s.name, Reason: "cannot create a container", ExitCode: -1, Err: err})
		}
		return
	}
	if s.standbyBackoff > 0 {
		s.log.Info("standby container prepared again", zap.String("service", cfg.Name))
		s.standbyBackoff = 0
	}
	stopped := inst.state != stStandby
	if stopped {
		// It was told to stop while being created; its stop finds no id
		// and leaves the container to us, also during shutdown, which no
		// longer lists it. This runs as an op, so shutdown waits for it.
		s.removeLocked(inst)
	} else {
		inst.id = id // shutdown, if it comes, finds and removes it
	}
	s.mu.Unlock()
	if stopped {
		if err := s.sc.rt.Remove(context.WithoutCancel(s.sc.ctx), id); err != nil {
			s.log.Warn("cannot remove container", zap.String("container", inst.name), zap.Error(err))
		}
	}
}

func (s *Service) runStart(inst *instance, cfg ServiceConfig, lim Limits) {
	ctx, cancel := context.WithTimeout(s.stopping, cfg.StartTimeout)
	defer cancel()
	began := time.Now()
	addr, err := s.sc.startContainer(ctx, s, inst, cfg, lim)
	s.mu.Lock()
	defer s.mu.Unlock()
	if inst.state != stStarting || s.closed {
		return // stopped or crashed meanwhile, or shut down: whoever did that cleans up
	}
	if err != nil {
		s.Stats.StartFails.Add(1)
		se, ok := err.(*StartError)
		if !ok {
			se = &StartError{Service: cfg.Name, Reason: "the container could not be started", ExitCode: -1, Err: err}
		}
		s.log.Error("instance failed to start", zap.String("service", cfg.Name), zap.String("container", inst.name),
			zap.Int("exit_code", se.ExitCode), zap.Strings("logs", se.Logs), zap.Error(se.Err))
		s.sc.obs.InstanceStartFailed(s.name, inst.id, se)
		s.removeLocked(inst)
		s.noteScaleLocked()
		if inst.id != "" {
			id := inst.id
			s.spawn(func() { s.sc.rt.Remove(context.WithoutCancel(s.sc.ctx), id) })
		}
		s.backoff = min(max(2*s.backoff, time.Second), 30*time.Second)
		s.lastErr = se
		s.retryAt = time.Now().Add(s.backoff)
		if !s.anyServingLocked() {
			s.failQueueLocked(se)
		}
		return
	}
	s.Stats.ColdStarts.Add(1)
	s.lastErr, s.backoff = nil, 0
	inst.addr, inst.addrAny = addr, addr
	inst.state = stReady
	inst.lastActive = time.Now()
	took := time.Since(began)
	s.log.Info("instance ready", zap.String("service", cfg.Name), zap.String("container", inst.name),
		zap.Duration("took", took))
	s.sc.obs.InstanceStarted(s.name, inst.id, took)
	s.serveQueueLocked(inst, WakeStart)
	s.kickLoop() // prepare the next standby
}

func (s *Service) anyServingLocked() bool {
	for _, inst := range s.instances {
		switch inst.state {
		case stReady, stStarting, stResuming, stPausing:
			return true
		}
	}
	return false
}

func (s *Service) runPause(inst *instance) {
	ctx, cancel := context.WithTimeout(s.sc.ctx, 30*time.Second)
	defer cancel()
	err := s.sc.rt.Pause(ctx, inst.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if inst.state != stPausing {
		return
	}
	if err != nil {
		// It keeps running, and its idle clock keeps going so idle_timeout
		// still removes it; it is not paused again.
		s.log.Warn("pause failed; instance stays running", zap.String("container", inst.name), zap.Error(err))
		inst.state = stReady
		inst.noPause = true
		s.serveQueueLocked(inst, WakeNone)
		return
	}
	s.Stats.Pauses.Add(1)
	s.sc.obs.InstancePaused(s.name, inst.id)
	inst.state = stPaused
	if s.queue.Len() > 0 {
		s.scaleUpLocked()
	}
}

func (s *Service) runResume(inst *instance) {
	ctx, cancel := context.WithTimeout(s.sc.ctx, 30*time.Second)
	defer cancel()
	began := time.Now()
	err := s.sc.rt.Unpause(ctx, inst.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if inst.state != stResuming {
		return
	}
	if err != nil {
		s.log.Error("resume failed; replacing the instance", zap.String("container", inst.name), zap.Error(err))
		s.stopLocked(inst)
		s.scaleUpLocked()
		return
	}
	s.Stats.Resumes.Add(1)
	s.sc.obs.InstanceResumed(s.name, inst.id, time.Since(began))
	inst.state = stReady
	inst.lastActive = time.Now()
	s.serveQueueLocked(inst, WakeResume)
}

func (s *Service) runStop(inst *instance, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.sc.ctx), grace+30*time.Second)
	defer cancel()
	s.mu.Lock()
	id := inst.id // "": a standby still being created, which removes itself
	s.mu.Unlock()
	if id != "" {
		// A frozen process cannot take SIGTERM; removal kills it outright.
		if err := s.sc.rt.Stop(ctx, id, grace); err != nil {
			s.log.Debug("stop failed, removing anyway", zap.String("container", inst.name), zap.Error(err))
		}
		if err := s.sc.rt.Remove(ctx, id); err != nil {
			s.log.Warn("cannot remove container", zap.String("container", inst.name), zap.Error(err))
		}
	}
	s.Stats.Stops.Add(1)
	if inst.id != "" {
		s.sc.obs.InstanceRemoved(s.name, inst.id)
	}
	s.mu.Lock()
	s.removeLocked(inst)
	s.mu.Unlock()
}

// onDied handles the engine's report that a container exited.
func (s *Service) onDied(id string, exitCode int) {
	s.mu.Lock()
	inst := s.find(id)
	if inst == nil {
		s.mu.Unlock()
		return
	}
	inst.exitCode = exitCode
	if s.closed {
		s.mu.Unlock()
		return // shutdown removes it
	}
	switch inst.state {
	case stStopping, stStandby:
		s.mu.Unlock()
		return
	case stStarting:
		// runStart sees it and fails the start with the logs.
		select {
		case <-inst.died:
		default:
			close(inst.died)
		}
		s.mu.Unlock()
		return
	}
	prev := inst.state
	inst.state = stStopping
	s.removeLocked(inst)
	s.Stats.Crashes.Add(1)
	if s.queue.Len() > 0 {
		s.scaleUpLocked()
	}
	s.noteScaleLocked()
	s.mu.Unlock()
	s.spawn(func() { s.cleanupCrashed(inst, prev) })
}

func (s *Service) cleanupCrashed(inst *instance, prev instState) {
	name := s.name
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.sc.ctx), 30*time.Second)
	defer cancel()
	info, _ := s.sc.rt.Inspect(ctx, inst.id)
	logs, _ := s.sc.rt.Logs(ctx, inst.id, 20)
	// Podman 4.3 on cgroup v1 never reports OOMKilled. An instance we did
	// not stop has no other source of SIGKILL than the kernel's OOM killer
	// (under an init, the killed app makes init exit 128+9), so count that.
	oom := info.OOMKilled || inst.exitCode == 137
	if oom {
		s.Stats.OOMKills.Add(1)
	}
	s.log.Error("instance died", zap.String("service", name), zap.String("container", inst.name),
		zap.String("was", prev.String()), zap.Int("exit_code", inst.exitCode), zap.Bool("oom_killed", oom),
		zap.Strings("logs", logs))
	s.sc.obs.InstanceCrashed(name, inst.id, Crash{ExitCode: inst.exitCode, OOMKilled: oom, Was: prev.String(), Logs: logs})
	if err := s.sc.rt.Remove(ctx, inst.id); err != nil {
		s.log.Warn("cannot remove dead container", zap.String("container", inst.name), zap.Error(err))
	}
	s.sc.obs.InstanceRemoved(name, inst.id)
}

// update switches the service to a new config. A new revision rolls
// instances over; scaling knobs apply at once.
func (s *Service) update(cfg ServiceConfig, lim Limits) {
	s.mu.Lock()
	s.cfg = cfg
	s.limits = lim
	if rev := cfg.Revision(); rev != s.rev {
		s.rev = rev
		s.standbyBackoff = 0 // a new image or env may create fine: try at once
	}
	if s.queue.Len() > 0 {
		s.scaleUpLocked()
	}
	s.mu.Unlock()
	s.kickLoop()
}

// Snapshot is a service's state for status pages and tests.
type Snapshot struct {
	Name      string
	Revision  string
	Inflight  int
	Queued    int
	Instances []InstanceSnapshot
}

type InstanceSnapshot struct {
	ID       string
	Name     string
	State    string
	Revision string
	Addr     string
	Inflight int
	Net      InstanceNet // its network and rate
}

// Count returns how many instances are in the given state ("ready", "paused"...).
func (s Snapshot) Count(state string) int {
	n := 0
	for _, i := range s.Instances {
		if i.State == state {
			n++
		}
	}
	return n
}

// Up counts instances that run (or are frozen) to serve: not standby,
// draining or stopping.
func (s Snapshot) Up() int {
	return s.Count("starting") + s.Count("ready") + s.Count("pausing") + s.Count("paused") + s.Count("resuming")
}

func (s *Service) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{Name: s.cfg.Name, Revision: s.rev, Inflight: s.inflight, Queued: s.queue.Len()}
	for _, inst := range s.instances {
		snap.Instances = append(snap.Instances, InstanceSnapshot{ID: inst.id, Name: inst.name, State: inst.state.String(),
			Revision: inst.revision, Addr: inst.addr, Inflight: inst.inflight, Net: inst.net})
	}
	return snap
}

func (s *Service) String() string { return fmt.Sprintf("service %s", s.name) }
