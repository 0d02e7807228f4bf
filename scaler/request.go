package scaler

import (
	"container/list"
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

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

// Wait says whether and how long a request waited for its instance.
type Wait struct {
	Wake   Wake          // what it waited for; WakeNone if an instance was free
	Waited time.Duration // how long it queued; zero if it did not
}

// Try runs fn with the address (host:port) of an instance with spare
// capacity, starting or resuming one if needed and waiting for it in a
// bounded FIFO queue, and gives the instance's slot back when fn returns
// (or panics). It returns fn's error, or why no instance could be had:
// ErrQueueFull, ErrQueueTimeout, ErrClosed, a *StartError, or ctx's error.
//
// fn reports that the instance refused the connection by returning an
// error that wraps ErrRefused (errors.Is), and only when nothing reached
// the app: the instance then takes no more requests, and Try runs fn once
// more with another instance, unless ctx is done. A second refusal is
// returned as it is. A refused connection cannot be told from a net error
// alone (a proxy may have answered the client already), so only fn knows.
//
// On a warm instance Try allocates nothing: a request waits (and
// allocates) only when no instance is free.
func (s *Service) Try(ctx context.Context, fn func(addr string) error) error {
	return s.TryWait(ctx, func(addr string, _ Wait) error { return fn(addr) })
}

// TryWait is Try for a caller that tells its client whether the request
// waited for a cold start or a resume, and for how long.
func (s *Service) TryWait(ctx context.Context, fn func(addr string, w Wait) error) error {
	for first := true; ; first = false {
		l, err := s.acquire(ctx)
		if err != nil {
			return err
		}
		if retry, err := s.attempt(ctx, l, first, fn); !retry {
			return err
		}
	}
}

// attempt runs fn on one lease. It is a method of its own so that the
// deferred release runs when fn returns, and when it panics.
func (s *Service) attempt(ctx context.Context, l lease, first bool, fn func(string, Wait) error) (retry bool, err error) {
	defer func() {
		if retry {
			l.refused()
		} else {
			l.release()
		}
	}()
	err = fn(l.Addr, Wait{Wake: l.Wake, Waited: l.Waited})
	retry = first && err != nil && errors.Is(err, ErrRefused) && ctx.Err() == nil
	return retry, err
}

// lease is one request's hold on an instance; release it exactly once.
// Tests outside the package reach it through export_test.go.
type lease struct {
	svc  *Service
	inst *instance
	// Addr is host:port of the instance's app.
	Addr string
	// Waited is how long the request queued; zero if it did not.
	Waited time.Duration
	Wake   Wake
}

// acquire returns an instance with spare capacity, starting or resuming one
// if needed and waiting for it in a bounded FIFO queue. Errors: ErrQueueFull,
// ErrQueueTimeout, ErrClosed, a *StartError, or ctx's error.
func (s *Service) acquire(ctx context.Context) (lease, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return lease{}, ErrClosed
	}
	now := time.Now()
	if s.queue.Len() == 0 {
		if inst := s.pickLocked(); inst != nil {
			inst.inflight++
			s.inflight++
			inst.lastActive = now
			s.notePeakLocked()
			s.mu.Unlock()
			return lease{svc: s, inst: inst, Addr: inst.addr}, nil
		}
	}
	if s.lastErr != nil && now.Before(s.retryAt) && !s.anyServingLocked() {
		err := s.lastErr
		s.mu.Unlock()
		s.sc.obs.Queued(s.name, 0, WakeNone, QueueFailed)
		return lease{}, err
	}
	if s.queue.Len() >= s.cfg.QueueSize {
		s.mu.Unlock()
		s.Stats.QueueFull.Add(1)
		s.sc.obs.Queued(s.name, 0, WakeNone, QueueFull)
		return lease{}, ErrQueueFull
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
		return lease{}, err
	}
	s.mu.Unlock()
	// Delivered while we gave up: the result is in the channel.
	r := <-w.ch
	if r.err == nil && ctx.Err() != nil {
		s.release(r.inst)
		s.sc.obs.Queued(s.name, time.Since(now), r.wake, QueueCanceled)
		return lease{}, ctx.Err()
	}
	return s.leaseFrom(r, now)
}

// leaseFrom turns what a queued request was handed into its lease.
func (s *Service) leaseFrom(r result, since time.Time) (lease, error) {
	waited := time.Since(since)
	if r.err != nil {
		s.sc.obs.Queued(s.name, waited, r.wake, QueueFailed)
		return lease{}, r.err
	}
	s.sc.obs.Queued(s.name, waited, r.wake, QueueServed)
	return lease{svc: s, inst: r.inst, Addr: r.inst.addr, Waited: waited, Wake: r.wake}, nil
}

// release gives the request's slot back.
func (l lease) release() {
	if l.svc != nil {
		l.svc.release(l.inst)
	}
}

// refused gives the request's slot back and reports that the instance
// refused the connection. A ready instance that accepts no connection has
// exited (before Podman's event reached us) or is going: it takes no more
// requests and the loop replaces it. Nothing reached the app, so the
// request may try again with another lease.
func (l lease) refused() {
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
		// Draining, not stopped: if it did exit, its died event records
		// the crash, or its stop does when it wins the race with that
		// event (see runStop); if not, the loop stops it once it is empty.
		inst.state = stDraining
		inst.drainSince = time.Now()
		inst.refused = true
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
