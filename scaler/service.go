package scaler

import (
	"container/list"
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Service runs the instances of one service. Try is the request path: it
// takes only this service's lock, never calls Podman, and allocates nothing
// unless the request has to wait.
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
	// usedAt is when the loop last saw an instance up (zero: never). The
	// service keeps a standby container until Options.StandbyIdle after it.
	usedAt time.Time
	// ticks counts the policy loop's runs (tests check that a service at
	// rest does not tick).
	ticks int

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
	// BoostDenied counts starts that found the startup CPU boost budget
	// spent and ran at their own CPU quota.
	BoostDenied atomic.Int64
}

type instance struct {
	id         string
	name       string
	revision   string
	state      instState
	addr       string
	inflight   int
	lastActive time.Time
	drainSince time.Time
	died       chan struct{} // closed when the engine reports the container died
	exitCode   int
	noPause    bool // a pause failed: do not try again
	refused    bool // it refused a connection: it may have exited on its own
	net        InstanceNet
	// prep is what Podman said of a standby initialized ahead, whose
	// network is fenced and shaped at net's rate (see prepareStandby).
	prep *ContainerInfo
}

// Name is the service's name.
func (s *Service) Name() string { return s.name }

// Config is the service's current configuration.
func (s *Service) Config() ServiceConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
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

// update switches the service to a new config. A new revision rolls
// instances over; scaling knobs apply at once.
func (s *Service) update(cfg ServiceConfig, lim Limits) {
	s.mu.Lock()
	if lim == s.limits && reflect.DeepEqual(cfg, s.cfg) {
		s.mu.Unlock()
		return
	}
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
	ID       string      `json:"id"`
	Name     string      `json:"name"`
	State    string      `json:"state"`
	Revision string      `json:"revision"`
	Addr     string      `json:"addr"`
	Inflight int         `json:"inflight"`
	Net      InstanceNet `json:"net"` // its network and rate
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
