package cron

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podcell/podcell/caddymodule/internal/duration"
)

var t0 = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

func hourly() Job {
	return Job{Service: "hello", Name: "tick", Schedule: "0 * * * *", Path: "/tick"}
}

func TestNewNeedsService(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without Options.Service succeeded")
	}
}

func TestFiresOnSchedule(t *testing.T) {
	rt := new(okTransport)
	h := newHarness(t, t0.Add(10*time.Minute), rt)
	j := hourly()
	j.TimeZone = "America/New_York"
	j.Schedule = "0 9 * * *"
	h.set(j)
	next, ok := h.s.Next("hello", "tick")
	if want := time.Date(2024, 6, 1, 13, 0, 0, 0, time.UTC); !ok || !next.Equal(want) {
		t.Fatalf("next fire %s, want %s (09:00 EDT)", next, want)
	}
	h.to(next.Add(-time.Second))
	if rt.count() != 0 {
		t.Fatal("fired early")
	}
	h.to(next)
	runs := h.waitRuns(1)
	if len(runs) != 1 || runs[0].Status != StatusSucceeded || !runs[0].Scheduled.Equal(next) || runs[0].Manual {
		t.Fatalf("runs: %+v", runs)
	}
	if got, _ := h.s.Next("hello", "tick"); !got.Equal(next.Add(24 * time.Hour)) {
		t.Fatalf("then next %s", got)
	}
}

// The scheduler, stepping through a DST night ten minutes at a time, runs
// each daily job exactly once.
func TestSchedulerAcrossDST(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	for _, tc := range []struct {
		name, schedule string
		from, until    time.Time
		want           string // the run's Podcell-Cron-Scheduled
	}{
		{"spring forward", "30 2 * * *", time.Date(2024, 3, 10, 0, 0, 0, 0, ny), time.Date(2024, 3, 10, 6, 0, 0, 0, ny), "2024-03-10T03:00:00-04:00"},
		{"fall back", "30 1 * * *", time.Date(2024, 11, 3, 0, 0, 0, 0, ny), time.Date(2024, 11, 3, 6, 0, 0, 0, ny), "2024-11-03T01:30:00-04:00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := new(okTransport)
			h := newHarness(t, tc.from, rt)
			h.set(Job{Service: "hello", Name: "nightly", Schedule: tc.schedule, Path: "/n", TimeZone: "America/New_York"})
			for now := tc.from; now.Before(tc.until); now = now.Add(10 * time.Minute) {
				h.to(now)
			}
			runs := h.waitRuns(1)
			if len(runs) != 1 || rt.count() != 1 {
				t.Fatalf("%d runs, %d requests: %+v", len(runs), rt.count(), runs)
			}
			if got := rt.reqs[0].Header.Get(HeaderScheduled); got != tc.want {
				t.Fatalf("scheduled %s, want %s", got, tc.want)
			}
		})
	}
}

func TestOverlapSkip(t *testing.T) {
	g := newGate()
	h := newHarness(t, t0, g)
	h.set(hourly())
	h.advance(time.Hour)
	g.waitStarted(t)
	h.advance(time.Hour) // still running
	g.noneStarted(t)
	g.release <- struct{}{}
	runs := h.waitRuns(2)
	if !reflect.DeepEqual(statuses(runs), []Status{StatusSkipped, StatusSucceeded}) {
		t.Fatalf("statuses %v", statuses(runs))
	}
	if !runs[0].Scheduled.Equal(t0.Add(2*time.Hour)) || !runs[1].Scheduled.Equal(t0.Add(time.Hour)) {
		t.Fatalf("runs: %+v", runs)
	}
	h.advance(time.Hour) // free again
	g.waitStarted(t)
	g.release <- struct{}{}
	if runs := h.waitRuns(3); len(runs) != 3 || runs[2].Status != StatusSucceeded {
		t.Fatalf("runs: %+v", runs)
	}
}

func TestOverlapAllow(t *testing.T) {
	g := newGate()
	h := newHarness(t, t0, g)
	j := hourly()
	j.Overlap = OverlapAllow
	h.set(j)
	h.advance(time.Hour)
	first := g.waitStarted(t)
	h.advance(time.Hour)
	second := g.waitStarted(t)
	if first.Header.Get(HeaderScheduled) == second.Header.Get(HeaderScheduled) {
		t.Fatal("the same tick ran twice")
	}
	g.release <- struct{}{}
	g.release <- struct{}{}
	runs := h.waitRuns(2)
	if !reflect.DeepEqual(statuses(runs), []Status{StatusSucceeded, StatusSucceeded}) {
		t.Fatalf("statuses %v", statuses(runs))
	}
}

func TestOverlapReplace(t *testing.T) {
	g := newGate()
	h := newHarness(t, t0, g)
	j := hourly()
	j.Overlap = OverlapReplace
	h.set(j)
	h.advance(time.Hour)
	first := g.waitStarted(t)
	h.advance(time.Hour)
	g.waitStarted(t)
	if first.Context().Err() == nil {
		t.Fatal("the replaced run's request was not cancelled")
	}
	g.release <- struct{}{}
	runs := h.waitRuns(2)
	if !reflect.DeepEqual(statuses(runs), []Status{StatusCancelled, StatusSucceeded}) {
		t.Fatalf("statuses %v", statuses(runs))
	}
	if !strings.Contains(runs[0].Error, "replaced") || !runs[1].Scheduled.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("runs: %+v", runs)
	}
}

// A loop that wakes ten hours late (a suspended machine) runs the latest
// tick once and records the 119 before it as one missed run.
func TestMissedAfterLongSleep(t *testing.T) {
	rt := new(okTransport)
	h := newHarness(t, t0, rt)
	h.set(Job{Service: "hello", Name: "five", Schedule: "*/5 * * * *", Path: "/five"})
	h.to(t0.Add(10*time.Hour + 2*time.Minute))
	runs := h.waitRuns(2)
	if len(runs) != 2 || rt.count() != 1 {
		t.Fatalf("%d runs, %d requests: %+v", len(runs), rt.count(), runs)
	}
	missed, ran := runs[0], runs[1]
	if missed.Status != StatusMissed || !missed.Scheduled.Equal(t0.Add(5*time.Minute)) || !strings.HasPrefix(missed.Error, "119 run(s)") {
		t.Fatalf("missed: %+v", missed)
	}
	if ran.Status != StatusSucceeded || !ran.Scheduled.Equal(t0.Add(10*time.Hour)) || !ran.Started.Equal(t0.Add(10*time.Hour+2*time.Minute)) {
		t.Fatalf("late run: %+v", ran)
	}
	h.to(t0.Add(10*time.Hour + 5*time.Minute))
	if runs := h.waitRuns(3); len(runs) != 3 || runs[2].Status != StatusSucceeded || rt.count() != 2 {
		t.Fatalf("after catching up: %+v", runs)
	}
}

// A new scheduler (a restart) continues after the last scheduled run in
// the store: nothing if no tick passed, one late run if one did, one late
// run and one missed record if several did.
func TestMissedAcrossRestart(t *testing.T) {
	store := new(memStore)
	withStore := func(o *Options) { o.Store = store }

	rt := new(okTransport)
	h := newHarness(t, t0.Add(30*time.Minute), rt, withStore)
	h.set(hourly())
	h.to(t0.Add(time.Hour))
	h.waitRuns(1)
	h.s.Close()

	for _, tc := range []struct {
		name      string
		restart   time.Duration // after t0
		statuses  []Status
		scheduled []time.Duration
		next      time.Duration
	}{
		{"no tick passed", 80 * time.Minute, nil, nil, 2 * time.Hour},
		{"one tick passed", 130 * time.Minute, []Status{StatusSucceeded}, []time.Duration{2 * time.Hour}, 3 * time.Hour},
		{"days passed", 72*time.Hour + 30*time.Minute, []Status{StatusMissed, StatusSucceeded}, []time.Duration{2 * time.Hour, 72 * time.Hour}, 73 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := len(store.runs)
			rt := new(okTransport)
			h := newHarness(t, t0.Add(tc.restart), rt, withStore)
			h.set(hourly())
			runs := h.waitRuns(len(tc.statuses))
			if !reflect.DeepEqual(statuses(runs), tc.statuses) {
				t.Fatalf("statuses %v, want %v: %+v", statuses(runs), tc.statuses, runs)
			}
			for i, d := range tc.scheduled {
				if !runs[i].Scheduled.Equal(t0.Add(d)) {
					t.Errorf("run %d scheduled %s, want %s", i, runs[i].Scheduled, t0.Add(d))
				}
			}
			if next, _ := h.s.Next("hello", "tick"); !next.Equal(t0.Add(tc.next)) {
				t.Errorf("next %s, want %s", next, t0.Add(tc.next))
			}
			if hist := h.s.History("hello", "tick"); len(hist) != saved+len(tc.statuses) {
				t.Errorf("history has %d runs, want the %d stored and %d new", len(hist), saved, len(tc.statuses))
			}
			h.s.Close()
			// Later subtests restart from the first scheduler's history only.
			store.mu.Lock()
			store.runs = store.runs[:saved]
			store.mu.Unlock()
		})
	}
}

// A reload with the same job keeps its next fire time; a changed job is
// rescheduled from now.
func TestSetKeepsUnchangedJob(t *testing.T) {
	rt := new(okTransport)
	h := newHarness(t, t0, rt)
	j := Job{Service: "hello", Name: "poll", Schedule: "@every 1h", Path: "/poll", Header: http.Header{"X-A": {"1"}}}
	h.set(j)
	h.advance(30 * time.Minute)
	again := j
	again.Header = http.Header{"X-A": {"1"}} // equal, not the same map
	h.set(again, Job{Service: "other", Schedule: "@daily", Path: "/"})
	if next, _ := h.s.Next("hello", "poll"); !next.Equal(t0.Add(time.Hour)) {
		t.Fatalf("unchanged job moved to %s", next)
	}
	h.to(t0.Add(time.Hour))
	if runs := h.waitRuns(1); len(runs) != 1 {
		t.Fatalf("runs: %+v", runs)
	}

	h.advance(30 * time.Minute)
	changed := again
	changed.Path = "/poll2"
	h.set(changed)
	if next, _ := h.s.Next("hello", "poll"); !next.Equal(t0.Add(150 * time.Minute)) {
		t.Fatalf("changed job: next %s, want an hour from now", next)
	}
	h.to(t0.Add(2 * time.Hour)) // the old definition's tick
	if runs := h.waitRuns(1); len(runs) != 1 {
		t.Fatalf("the changed job fired on its old schedule: %+v", runs)
	}
}

// A reload while a run is in progress neither fires the job again nor
// loses the run.
func TestSetDuringRun(t *testing.T) {
	g := newGate()
	h := newHarness(t, t0, g)
	h.set(hourly())
	h.advance(time.Hour)
	g.waitStarted(t)
	h.set(hourly())
	h.advance(time.Minute)
	g.noneStarted(t)
	g.release <- struct{}{}
	runs := h.waitRuns(1)
	if len(runs) != 1 || runs[0].Status != StatusSucceeded {
		t.Fatalf("runs: %+v", runs)
	}
	if next, _ := h.s.Next("hello", "tick"); !next.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("next %s", next)
	}
}

// A removed job fires no more; its run in progress finishes and is recorded.
func TestSetRemovesJob(t *testing.T) {
	g := newGate()
	h := newHarness(t, t0, g)
	h.set(hourly())
	h.advance(time.Hour)
	g.waitStarted(t)
	h.set()
	if _, ok := h.s.Next("hello", "tick"); ok {
		t.Fatal("a removed job has a next fire time")
	}
	if err := h.s.Trigger("hello", "tick"); err == nil {
		t.Fatal("triggered a removed job")
	}
	g.release <- struct{}{}
	if runs := h.waitRuns(1); len(runs) != 1 || runs[0].Status != StatusSucceeded {
		t.Fatalf("runs: %+v", runs)
	}
	h.advance(5 * time.Hour)
	g.noneStarted(t)
	if hist := h.s.History("hello", "tick"); hist != nil {
		t.Fatalf("a removed job kept its history: %+v", hist)
	}
}

func TestSetRejectsAll(t *testing.T) {
	h := newHarness(t, t0, new(okTransport))
	h.set(hourly())
	bad := Job{Service: "hello", Name: "bad", Schedule: "61 * * * *", Path: "/"}
	if err := h.s.Set([]Job{bad}); err == nil || !strings.Contains(err.Error(), `cron job "bad" of service hello: schedule`) {
		t.Fatalf("error %v", err)
	}
	if err := h.s.Set([]Job{hourly(), hourly()}); err == nil || !strings.Contains(err.Error(), "declared twice") {
		t.Fatalf("duplicate: %v", err)
	}
	if _, ok := h.s.Next("hello", "tick"); !ok {
		t.Fatal("a failed Set changed the jobs")
	}
}

func TestTrigger(t *testing.T) {
	g := newGate()
	h := newHarness(t, t0.Add(20*time.Minute), g)
	h.set(hourly())
	if err := h.s.Trigger("hello", "nope"); err == nil || !strings.Contains(err.Error(), `cron job "nope" of service hello does not exist`) {
		t.Fatalf("unknown job: %v", err)
	}
	if err := h.s.Trigger("hello", "tick"); err != nil {
		t.Fatal(err)
	}
	req := g.waitStarted(t)
	if got := req.Header.Get(HeaderScheduled); got != "2024-06-01T00:20:00Z" {
		t.Fatalf("manual run scheduled %s", got)
	}
	if err := h.s.Trigger("hello", "tick"); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("second trigger under overlap skip: %v", err)
	}
	g.release <- struct{}{}
	runs := h.waitRuns(1)
	if len(runs) != 1 || !runs[0].Manual || runs[0].Status != StatusSucceeded {
		t.Fatalf("runs: %+v", runs)
	}
	if next, _ := h.s.Next("hello", "tick"); !next.Equal(t0.Add(time.Hour)) {
		t.Fatalf("a manual run moved the schedule to %s", next)
	}
}

func TestHeaders(t *testing.T) {
	rt := new(okTransport)
	h := newHarness(t, t0.Add(-time.Hour), rt, func(o *Options) {
		o.Secret = func(service string) string {
			if service == "hello" {
				return "s3cret"
			}
			return ""
		}
	})
	h.set(Job{
		Service: "hello", Name: "report", Schedule: "0 2 * * *", TimeZone: "Europe/Berlin",
		Method: "POST", Path: "/tasks/report?full=1", Body: `{"a":1}`,
		Header: http.Header{"Content-Type": {"application/json"}, "x-tenant": {"t1"}},
	}, Job{Service: "other", Name: "ping", Schedule: "0 2 * * *", TimeZone: "Europe/Berlin", Path: "/ping",
		Header: http.Header{"User-Agent": {"mine"}}})
	h.to(time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)) // 02:00 in Berlin
	h.waitRuns(2)
	var post, ping *http.Request
	for _, r := range rt.reqs {
		if r.Method == "POST" {
			post = r
		} else {
			ping = r
		}
	}
	if post == nil || ping == nil {
		t.Fatalf("requests: %v", rt.reqs)
	}
	if post.URL.String() != "/tasks/report?full=1" || post.Host != "hello" {
		t.Errorf("url %s host %s", post.URL, post.Host)
	}
	body, _ := io.ReadAll(post.Body)
	if string(body) != `{"a":1}` {
		t.Errorf("body %q", body)
	}
	for k, want := range map[string]string{
		"Podcell-Cron":           "report",
		"Podcell-Cron-Scheduled": "2024-06-01T02:00:00+02:00",
		"Podcell-Cron-Attempt":   "1",
		"Podcell-Cron-Secret":    "s3cret",
		"User-Agent":             "podcell-cron",
		"Content-Type":           "application/json",
		"X-Tenant":               "t1",
	} {
		if got := post.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if ping.Host != "other" || ping.Method != "GET" || ping.Header.Get("User-Agent") != "mine" {
		t.Errorf("ping: %s %s %v", ping.Method, ping.Host, ping.Header)
	}
	if _, ok := ping.Header[HeaderSecret]; ok {
		t.Error("an empty secret was sent")
	}
}

// server starts an httptest server and a transport that sends every
// request to it, keeping the Host the scheduler chose.
func server(t *testing.T, h http.HandlerFunc) http.RoundTripper {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	base := srv.Client().Transport
	return rtFunc(func(req *http.Request) (*http.Response, error) {
		req = req.Clone(req.Context())
		req.URL.Scheme, req.URL.Host = "http", u.Host
		return base.RoundTrip(req)
	})
}

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		retries  int
		answers  []int // per attempt; the last one repeats; 0 is a dropped connection
		status   Status
		attempts int
		code     int
		err      string
	}{
		{"5xx then success", 3, []int{500, 502, 200}, StatusSucceeded, 3, 200, ""},
		{"5xx exhausts retries", 2, []int{503}, StatusFailed, 3, 503, "HTTP 503 after 3 attempt(s): busy"},
		{"429 is retried", 1, []int{429, 204}, StatusSucceeded, 2, 204, ""},
		{"connection error is retried", 2, []int{0, 200}, StatusSucceeded, 2, 200, ""},
		{"4xx is not retried", 3, []int{404}, StatusFailed, 1, 404, "HTTP 404 after 1 attempt(s)"},
		{"501 is not retried", 3, []int{501}, StatusFailed, 1, 501, "HTTP 501"},
		{"no retries", 0, []int{500, 200}, StatusFailed, 1, 500, "HTTP 500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string
			rt := server(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen = append(seen, r.Header.Get(HeaderAttempt))
				code := tc.answers[min(len(seen), len(tc.answers))-1]
				mu.Unlock()
				if code == 0 {
					panic(http.ErrAbortHandler) // drops the connection
				}
				w.WriteHeader(code)
				io.WriteString(w, "busy")
			})
			h := newHarness(t, t0, rt)
			j := hourly()
			j.Retries = tc.retries
			h.set(j)
			h.advance(time.Hour)
			runs := h.waitRuns(1)
			r := runs[0]
			if r.Status != tc.status || r.Attempts != tc.attempts || r.StatusCode != tc.code || !strings.Contains(r.Error, tc.err) {
				t.Fatalf("run: %+v", r)
			}
			var want []string
			for i := 1; i <= tc.attempts; i++ {
				want = append(want, strconv.Itoa(i))
			}
			mu.Lock()
			defer mu.Unlock()
			if !reflect.DeepEqual(seen, want) {
				t.Fatalf("attempt headers %v, want %v", seen, want)
			}
		})
	}
}

// However the service answers, one run takes at most timeout × (retries+1).
func TestRunTimeBounded(t *testing.T) {
	t.Run("hanging service", func(t *testing.T) {
		rt := server(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		h := newHarness(t, t0, rt)
		j := hourly()
		j.Timeout, j.Retries = duration.Duration(50*time.Millisecond), 2
		h.set(j)
		h.advance(time.Hour)
		r := h.waitRuns(1)[0]
		if r.Status != StatusFailed || r.Attempts < 2 || r.Duration > 500*time.Millisecond {
			t.Fatalf("run: %+v", r)
		}
	})
	t.Run("long Retry-After", func(t *testing.T) {
		rt := server(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(503)
		})
		h := newHarness(t, t0, rt)
		j := hourly()
		j.Timeout, j.Retries = duration.Duration(100*time.Millisecond), 3
		h.set(j)
		h.advance(time.Hour)
		r := h.waitRuns(1)[0]
		if r.Status != StatusFailed || r.Attempts != 1 || r.StatusCode != 503 || r.Duration > 2*time.Second ||
			!strings.Contains(r.Error, "time limit ran out") {
			t.Fatalf("run: %+v", r)
		}
		if r.Duration < 350*time.Millisecond {
			t.Fatalf("gave up after %s, before the 400ms budget", r.Duration)
		}
	})
}

func TestHistoryBoundedAndStored(t *testing.T) {
	rt := new(okTransport)
	var store *memStore
	h := newHarness(t, t0, rt, func(o *Options) { o.HistorySize = 3 })
	store = h.store
	h.set(hourly())
	for i := 1; i <= 5; i++ {
		h.advance(time.Hour)
		h.waitRuns(i)
	}
	hist := h.s.History("hello", "tick")
	if len(hist) != 3 || !hist[0].Scheduled.Equal(t0.Add(3*time.Hour)) || !hist[2].Scheduled.Equal(t0.Add(5*time.Hour)) {
		t.Fatalf("history: %+v", hist)
	}
	if len(store.runs) != 5 {
		t.Fatalf("store has %d runs", len(store.runs))
	}
}

func TestClose(t *testing.T) {
	g := newGate()
	h := newHarness(t, t0, g)
	h.set(hourly())
	h.advance(time.Hour)
	g.waitStarted(t)
	if err := h.s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for the run to be recorded.
	h.mu.Lock()
	runs := append([]Run(nil), h.runs...)
	h.mu.Unlock()
	if len(runs) != 1 || runs[0].Status != StatusCancelled {
		t.Fatalf("runs: %+v", runs)
	}
	if err := h.s.Set([]Job{hourly()}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
	if err := h.s.Trigger("hello", "tick"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Trigger after Close: %v", err)
	}
	if err := h.s.Close(); err != nil {
		t.Fatal(err)
	}
}
