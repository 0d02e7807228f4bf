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
