package observe

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/podcell/podcell/scaler"
)

// Hub gathers what one scaler's services go through: metrics, their
// instances' output and their errors. It is the scaler's Observer, so it
// lives as long as the scaler does (across config reloads), and the
// handler reports each request to it.
type Hub struct {
	Metrics *Metrics
	Logs    *Logs
	Events  *Events

	collector *Collector // nil: instance output is not collected
	sc        atomic.Pointer[scaler.Scaler]
	declared  atomic.Pointer[func(string) bool]
}

// Declared tells the hub which services exist before they run (a git
// service during its first build): their logs and events are empty, not
// unknown.
func (h *Hub) Declared(f func(service string) bool) { h.declared.Store(&f) }

// NewHub returns a hub that collects instance output through rt (nil: none).
func NewHub(rt scaler.Runtime) *Hub {
	h := &Hub{Metrics: NewMetrics(), Logs: NewLogs(0), Events: NewEvents(0)}
	if rt != nil {
		h.collector = NewCollector(rt, h.Logs)
	}
	return h
}

// Watch ties the hub to the scaler it observes, whose services the gauges
// report and the handlers serve.
func (h *Hub) Watch(sc *scaler.Scaler) {
	h.sc.Store(sc)
	h.Metrics.Watch(func() []scaler.Snapshot {
		svcs := sc.Services()
		out := make([]scaler.Snapshot, 0, len(svcs))
		for _, svc := range svcs {
			out = append(out, svc.Snapshot())
		}
		return out
	})
}

// Serves reports whether the hub knows the service: its scaler runs it,
// it is declared, or lines of its output are kept.
func (h *Hub) Serves(service string) bool {
	if sc := h.sc.Load(); sc != nil && sc.Service(service) != nil {
		return true
	}
	if f := h.declared.Load(); f != nil && (*f)(service) {
		return true
	}
	return h.Logs.Has(service)
}

// Close stops collecting output and ends log followers.
func (h *Hub) Close() {
	if h.collector != nil {
		h.collector.Close()
	}
	h.Logs.Close()
}

// RequestDone records a response of service; a 5xx also becomes an event,
// with detail (or the status text) as its message.
func (h *Hub) RequestDone(service string, code int, took time.Duration, detail string) {
	h.Requests(service).Done(code, took, detail)
}

// Requests returns the recorder of service's responses. The request path
// keeps it (per service, made once), so recording a response looks up
// nothing and takes no lock once the service answered once.
func (h *Hub) Requests(service string) *Requests {
	return &Requests{hub: h, service: service}
}

// Requests records one service's responses.
type Requests struct {
	hub     *Hub
	service string
	// sm is looked up at the first response, not when the service is
	// declared: a service never used costs no series (about 7 KB each).
	sm atomic.Pointer[serviceMetrics]
}

// Done records a response; a 5xx also becomes an event, with detail (or
// the status text) as its message.
func (r *Requests) Done(code int, took time.Duration, detail string) {
	sm := r.sm.Load()
	if sm == nil {
		sm = r.hub.Metrics.service(r.service)
		r.sm.Store(sm)
	}
	sm.request(code, took)
	if code >= 500 && code < 600 {
		if detail == "" {
			detail = http.StatusText(code)
		}
		r.hub.Events.Add(Event{Service: r.service, Kind: KindHTTP5xx, Status: code, Message: detail})
	}
}

// The scaler.Observer methods fan out to metrics, events and the collector.

func (h *Hub) InstanceStarted(service, id string, took time.Duration) {
	h.Metrics.InstanceStarted(service, id, took)
	if h.collector != nil {
		h.collector.Follow(service, id)
	}
}

// InstanceStarting follows the instance's output from its start, so that
// the output of an app that never becomes ready is in the service's logs.
func (h *Hub) InstanceStarting(service, id string) {
	if h.collector != nil {
		h.collector.Follow(service, id)
	}
}

// InstanceSlow makes the hint an event and a line of the service's logs,
// beside the app's own output.
func (h *Hub) InstanceSlow(service, id, hint string) {
	h.Events.Add(Event{Service: service, Kind: KindStartHint, Instance: shortID(id), Message: hint})
	h.Logs.Add(Line{Time: time.Now(), Service: service, Instance: shortID(id), Stream: "podcell", Text: hint})
}

func (h *Hub) InstanceStartFailed(service, id string, err *scaler.StartError) {
	h.Metrics.InstanceStartFailed(service, id, err)
	ev := Event{Service: service, Kind: KindStartFailure, Instance: shortID(id), Message: err.Reason, Logs: err.Logs}
	if err.Err != nil {
		ev.Message += ": " + err.Err.Error()
	}
	if code := err.ExitCode; code >= 0 {
		ev.ExitCode = &code
	}
	h.Events.Add(ev)
}

func (h *Hub) InstanceResumed(service, id string, took time.Duration) {
	h.Metrics.InstanceResumed(service, id, took)
}

func (h *Hub) InstancePaused(service, id string) {
	h.Metrics.InstancePaused(service, id)
}

func (h *Hub) InstanceCrashed(service, id string, c scaler.Crash) {
	h.Metrics.InstanceCrashed(service, id, c)
	code := c.ExitCode
	ev := Event{Service: service, Kind: KindCrash, Instance: shortID(id), ExitCode: &code, Logs: c.Logs,
		Message: fmt.Sprintf("the instance exited with code %d while %s", c.ExitCode, c.Was)}
	if c.OOMKilled {
		ev.Kind = KindOOMKill
		ev.Message = fmt.Sprintf("the instance ran out of memory and was killed while %s", c.Was)
	}
	h.Events.Add(ev)
}

func (h *Hub) InstanceRemoved(service, id string) {
	h.Metrics.InstanceRemoved(service, id)
	if h.collector != nil {
		h.collector.Stop(id)
	}
}

func (h *Hub) Scaled(service string, from, to int) {
	h.Metrics.Scaled(service, from, to)
}

func (h *Hub) Queued(service string, waited time.Duration, wake scaler.Wake, outcome scaler.QueueOutcome) {
	h.Metrics.Queued(service, waited, wake, outcome)
}

var _ scaler.Observer = (*Hub)(nil)
