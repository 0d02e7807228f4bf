package scaler

import "context"

// Internals for the tests of package scaler_test, which use scalertest's
// fake runtime (scalertest imports scaler, so tests inside the package
// cannot).

// QueueLen and CountState look at a service without reading instance ids,
// so a test polling them while containers are created stays clear of id
// handling (that is TestServiceInstanceIDDataRace's job).
func QueueLen(s *Service) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue.Len()
}

// CountState counts the service's instances in state ("starting", "ready"...).
func CountState(s *Service, state string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, inst := range s.instances {
		if inst.state.String() == state {
			n++
		}
	}
	return n
}

// LoopDone is closed when the service's policy loop has ended.
func LoopDone(s *Service) <-chan struct{} { return s.done }

// Lease, Acquire and Release are the request path's halves, which Try
// joins: tests that hold an instance across steps (a full queue, a drain)
// take and give back leases themselves.
type Lease = lease

func (s *Service) Acquire(ctx context.Context) (Lease, error) { return s.acquire(ctx) }

func (l Lease) Release() { l.release() }
