package cron

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when a test sets it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
			continue
		}
		w.ch <- t
	}
	c.waiters = kept
}

// memStore keeps runs in memory, for tests.
type memStore struct {
	mu   sync.Mutex
	runs []Run
}

func (m *memStore) SaveRun(r Run) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs = append(m.runs, r)
	return nil
}

func (m *memStore) LoadRuns(service, job string) ([]Run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Run
	for _, r := range m.runs {
		if r.Service == service && r.Job == job {
			out = append(out, r)
		}
	}
	return out, nil
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func response(req *http.Request, code int, body string) *http.Response {
	return &http.Response{
		StatusCode: code,
		Status:     http.StatusText(code),
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    req,
	}
}

// via sends a service's requests through a RoundTripper.
type via struct{ rt http.RoundTripper }

func (v via) Do(_ context.Context, req *http.Request) (*http.Response, error) {
	return v.rt.RoundTrip(req)
}

// okTransport answers 200 and records the requests it got.
type okTransport struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (o *okTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	o.mu.Lock()
	o.reqs = append(o.reqs, req)
	o.mu.Unlock()
	return response(req, 200, "ok"), nil
}

func (o *okTransport) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.reqs)
}

// gate holds each request until the test releases one, or the request is
// cancelled.
type gate struct {
	started chan *http.Request
	release chan struct{}
}

func newGate() *gate {
	return &gate{started: make(chan *http.Request, 100), release: make(chan struct{})}
}

func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	g.started <- req
	select {
	case <-g.release:
		return response(req, 200, "ok"), nil
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
}

func (g *gate) waitStarted(t *testing.T) *http.Request {
	t.Helper()
	select {
	case req := <-g.started:
		return req
	case <-time.After(5 * time.Second):
		t.Fatal("no request started")
		return nil
	}
}

func (g *gate) noneStarted(t *testing.T) {
	t.Helper()
	select {
	case req := <-g.started:
		t.Fatalf("unexpected request, scheduled %s", req.Header.Get(HeaderScheduled))
	default:
	}
}

// harness runs a Scheduler on a fake clock and collects its runs.
type harness struct {
	t     *testing.T
	clock *fakeClock
	s     *Scheduler
	store *memStore

	mu   sync.Mutex
	runs []Run
}

func newHarness(t *testing.T, start time.Time, rt http.RoundTripper, opts ...func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(start), store: new(memStore)}
	o := Options{
		Service:      func(string) Doer { return via{rt} },
		Clock:        h.clock,
		Store:        h.store,
		RetryWaitMin: time.Millisecond,
		RetryWaitMax: 5 * time.Millisecond,
		OnRun: func(r Run) {
			h.mu.Lock()
			h.runs = append(h.runs, r)
			h.mu.Unlock()
		},
	}
	for _, f := range opts {
		f(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	t.Cleanup(func() { s.Close() })
	return h
}

func (h *harness) set(jobs ...Job) {
	h.t.Helper()
	if err := h.s.Set(jobs); err != nil {
		h.t.Fatal(err)
	}
	h.settle()
}

// to moves the clock and waits for a loop pass that saw the new time.
func (h *harness) to(t time.Time) {
	h.clock.set(t)
	h.settle()
}

func (h *harness) advance(d time.Duration) { h.to(h.clock.Now().Add(d)) }

func (h *harness) settle() {
	h.t.Helper()
	h.s.mu.Lock()
	target := h.s.passes + 1
	h.s.mu.Unlock()
	h.s.poke()
	deadline := time.Now().Add(5 * time.Second)
	for h.s.passesDone.Load() < target {
		if time.Now().After(deadline) {
			h.t.Fatal("the scheduler loop did not come around")
		}
		time.Sleep(time.Millisecond)
	}
}

// waitRuns waits until n runs were recorded and no run is in progress,
// then returns them all: more than n means extra runs.
func (h *harness) waitRuns(n int) []Run {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		got := append([]Run(nil), h.runs...)
		h.mu.Unlock()
		if len(got) >= n && h.idle() {
			// A run leaves e.running before OnRun sees it: give an extra
			// one the moment to show up.
			time.Sleep(20 * time.Millisecond)
			h.mu.Lock()
			defer h.mu.Unlock()
			return append([]Run(nil), h.runs...)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("waited for %d runs, got %d: %+v", n, len(got), got)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *harness) idle() bool {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	for _, e := range h.s.jobs {
		if len(e.running) > 0 {
			return false
		}
	}
	return true
}

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func statuses(runs []Run) []Status {
	var out []Status
	for _, r := range runs {
		out = append(out, r.Status)
	}
	return out
}
