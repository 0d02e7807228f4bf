package scaler

import (
	"context"
	"time"

	"go.uber.org/zap"
)

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
	grace := s.cfg.StopGrace
	if inst.state == stStandby {
		grace = 0 // its app never ran: nothing to let finish
	}
	inst.state = stStopping
	s.spawn(func() { s.runStop(inst, grace) })
}

// maxStandbyBackoff caps the wait between failed standby creates.
const maxStandbyBackoff = time.Minute

// ensureStandbyLocked keeps one container of the current revision ready to
// start while the service is in use (see wantStandbyLocked), so a cold
// start is only a start: creating a container costs about as much as
// starting it, and initializing it (prepareStandby) most of the rest. Out
// of use, it removes the standby.
func (s *Service) ensureStandbyLocked(now time.Time) {
	if !s.wantStandbyLocked(now) {
		for _, inst := range s.instances {
			if inst.state == stStandby {
				s.stopLocked(inst)
			}
		}
		return
	}
	if s.standbyBackoff > 0 && now.Before(s.standbyRetryAt) {
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

// wantStandbyLocked: an instance was up within Options.StandbyIdle (or
// every service keeps a standby). A service never used has none.
func (s *Service) wantStandbyLocked(now time.Time) bool {
	idle := s.sc.opts.StandbyIdle
	return idle < 0 || (!s.usedAt.IsZero() && now.Sub(s.usedAt) < idle)
}

func (s *Service) runCreateStandby(inst *instance, cfg ServiceConfig, lim Limits) {
	ctx, cancel := context.WithTimeout(s.sc.ctx, cfg.StartTimeout)
	defer cancel()
	cs, err := s.sc.spec(inst, cfg, lim)
	var id string
	if err == nil {
		id, err = s.sc.create(ctx, cs)
	}
	var in InstanceNet
	var prep *ContainerInfo
	if err == nil && !s.sc.opts.CreatedStandby {
		var info ContainerInfo
		if info, in, err = s.sc.prepareStandby(ctx, id, cfg, lim); err == nil {
			prep = &info
		} else {
			// Still a standby: its start initializes it, and reports
			// what fails then as the start's failure.
			s.log.Warn("cannot initialize standby container; it stays created", zap.String("service", cfg.Name), zap.Error(err))
			err = nil
		}
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
		inst.net, inst.prep = in, prep
	}
	s.mu.Unlock()
	if stopped {
		if err := s.sc.removeContainer(context.WithoutCancel(s.sc.ctx), id); err != nil {
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
			s.spawn(func() { s.sc.removeContainer(context.WithoutCancel(s.sc.ctx), id) })
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
	inst.addr = addr
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

// stoppedDead handles the stop of an instance that refused a connection
// and has in fact exited: its died event lost the race with this stop
// (the loop stops an empty draining instance at once, and a start from a
// prepared standby replaces it within about 100 ms), and onDied ignores
// an instance being stopped. It is a crash all the same: reported as one,
// then removed. False: it still runs, and is stopped as usual.
func (s *Service) stoppedDead(ctx context.Context, inst *instance) bool {
	info, err := s.sc.rt.Inspect(ctx, inst.id)
	if err != nil || !hasExited(info.State) {
		return false
	}
	s.mu.Lock()
	inst.exitCode = info.ExitCode
	s.mu.Unlock()
	s.Stats.Crashes.Add(1)
	s.cleanupCrashed(inst, stDraining)
	s.mu.Lock()
	s.removeLocked(inst)
	s.mu.Unlock()
	return true
}

func (s *Service) runStop(inst *instance, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.sc.ctx), grace+30*time.Second)
	defer cancel()
	s.mu.Lock()
	id := inst.id // "": a standby still being created, which removes itself
	refused := inst.refused
	s.mu.Unlock()
	if id != "" && refused && s.stoppedDead(ctx, inst) {
		return
	}
	if id != "" {
		// A frozen process cannot take SIGTERM; removal kills it outright.
		if err := s.sc.rt.Stop(ctx, id, grace); err != nil {
			s.log.Debug("stop failed, removing anyway", zap.String("container", inst.name), zap.Error(err))
		}
		if err := s.sc.removeContainer(ctx, id); err != nil {
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
