package scaler

import (
	"context"
	"time"
)

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

// tickEveryLocked is how often the policy runs while the service has
// instances: fine enough for the shortest of the service's timers, coarse
// enough to cost nothing.
func (s *Service) tickEveryLocked() time.Duration {
	t := s.cfg.StableWindow
	if s.cfg.PauseAfter > 0 {
		t = min(t, s.cfg.PauseAfter)
	}
	t = min(t, s.cfg.IdleTimeout, s.cfg.DrainTimeout) / 10
	return max(20*time.Millisecond, min(t, time.Second))
}

// maxRest bounds how long the loop of a service at rest sleeps: whatever
// needs it (a request, a new config) kicks it, so this only limits what a
// missed kick could cost.
const maxRest = time.Minute

func (s *Service) run(ctx context.Context) {
	defer close(s.done)
	s.mu.Lock()
	t := time.NewTimer(s.tickEveryLocked())
	s.mu.Unlock()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		t.Reset(s.tick(time.Now()))
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

// tick applies the policy and says when it should run next.
func (s *Service) tick(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ticks++
	if s.closed {
		return maxRest
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
	for _, inst := range s.instances {
		if isUp(inst.state) {
			s.usedAt = now
			break
		}
	}
	s.ensureStandbyLocked(now)
	s.noteScaleLocked()
	return s.nextTickLocked(now)
}

// nextTickLocked is how long the loop may sleep. A service at rest (no
// request, nothing up, at most a standby that exists) has no timer to
// follow but its standby's end or its next standby create after a
// failure: a thousand services at rest would otherwise wake Caddy a
// thousand times a second, and each tick would add a sample to the
// stable window.
func (s *Service) nextTickLocked(now time.Time) time.Duration {
	if s.inflight > 0 || s.queue.Len() > 0 {
		return s.tickEveryLocked()
	}
	for _, inst := range s.instances {
		if inst.state != stStandby || inst.id == "" {
			return s.tickEveryLocked()
		}
	}
	s.win = window{} // nothing up: no load to remember
	wait := maxRest
	if len(s.instances) > 0 && s.sc.opts.StandbyIdle > 0 {
		wait = min(wait, s.usedAt.Add(s.sc.opts.StandbyIdle).Sub(now))
	}
	if s.standbyBackoff > 0 && s.wantStandbyLocked(now) {
		wait = min(wait, s.standbyRetryAt.Sub(now))
	}
	return max(wait, 20*time.Millisecond)
}
