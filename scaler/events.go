package scaler

import (
	"context"
	"time"

	"go.uber.org/zap"
)

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
	if err := s.sc.removeContainer(ctx, inst.id); err != nil {
		s.log.Warn("cannot remove dead container", zap.String("container", inst.name), zap.Error(err))
	}
	s.sc.obs.InstanceRemoved(name, inst.id)
}
