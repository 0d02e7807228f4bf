package observe

import (
	"slices"
	"sync"
	"time"
)

// Event is an error a service ran into.
type Event struct {
	Time     time.Time `json:"time"`
	Service  string    `json:"service"`
	Kind     string    `json:"kind"`               // one of the Kind constants
	Instance string    `json:"instance,omitempty"` // short container id
	Message  string    `json:"message"`
	Status   int       `json:"status,omitempty"`    // the HTTP status, for KindHTTP5xx
	ExitCode *int      `json:"exit_code,omitempty"` // for an instance that exited
	Logs     []string  `json:"logs,omitempty"`      // the instance's last output lines
}

// Kinds of events.
const (
	KindHTTP5xx      = "http_5xx"      // the handler answered 5xx
	KindCrash        = "crash"         // a serving instance exited
	KindOOMKill      = "oom_kill"      // a serving instance was killed for memory
	KindStartFailure = "start_failure" // an instance could not start
	KindStartHint    = "start_hint"    // a starting instance does not answer yet, and why it seems
)

// Events keeps each service's last error events.
type Events struct {
	keep int

	mu       sync.Mutex
	services map[string]*eventRing
}

// eventRing grows to keep events, then wraps at next.
type eventRing struct {
	events []Event
	next   int
}

// DefaultKeptEvents is how many events per service Events keeps by default.
const DefaultKeptEvents = 100

// NewEvents keeps up to keep events per service (DefaultKeptEvents if keep <= 0).
func NewEvents(keep int) *Events {
	if keep <= 0 {
		keep = DefaultKeptEvents
	}
	return &Events{keep: keep, services: map[string]*eventRing{}}
}

// Add records ev, dropping the service's oldest event when its ring is
// full. A zero Time is now.
func (e *Events) Add(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.services[ev.Service]
	if r == nil {
		r = &eventRing{}
		e.services[ev.Service] = r
	}
	if len(r.events) < e.keep {
		r.events = append(r.events, ev)
		return
	}
	r.events[r.next] = ev
	r.next = (r.next + 1) % e.keep
}

// List returns the kept events of service, or of every service if it is
// "", newest first.
func (e *Events) List(service string) []Event {
	e.mu.Lock()
	var out []Event
	for name, r := range e.services {
		if service == "" || name == service {
			out = append(out, r.events...)
		}
	}
	e.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Event) int { return b.Time.Compare(a.Time) })
	return out
}
