package scaler_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// recorder is an Observer that keeps what it is told, one string per call
// plus the values a test checks more closely.
type recorder struct {
	mu        sync.Mutex
	calls     []string
	coldTook  []time.Duration
	resumed   []time.Duration
	crashes   []scaler.Crash
	failures  []*scaler.StartError
	queueWait []time.Duration // of served requests
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
}

func (r *recorder) InstanceStarted(service, id string, took time.Duration) {
	r.add("started %s %s", service, id)
	r.mu.Lock()
	r.coldTook = append(r.coldTook, took)
	r.mu.Unlock()
}

// InstanceStarting is not recorded: the call sequences the tests compare
// are those of instances that came up or went.
func (r *recorder) InstanceStarting(service, id string) {}

func (r *recorder) InstanceSlow(service, id, hint string) {
	r.add("slow %s %s: %s", service, id, hint)
}

func (r *recorder) InstanceStartFailed(service, id string, err *scaler.StartError) {
	r.add("start failed %s %s", service, id)
	r.mu.Lock()
	r.failures = append(r.failures, err)
	r.mu.Unlock()
}

func (r *recorder) InstanceResumed(service, id string, took time.Duration) {
	r.add("resumed %s %s", service, id)
	r.mu.Lock()
	r.resumed = append(r.resumed, took)
	r.mu.Unlock()
}

func (r *recorder) InstancePaused(service, id string) { r.add("paused %s %s", service, id) }

func (r *recorder) InstanceCrashed(service, id string, c scaler.Crash) {
	r.add("crashed %s %s", service, id)
	r.mu.Lock()
	r.crashes = append(r.crashes, c)
	r.mu.Unlock()
}

func (r *recorder) InstanceRemoved(service, id string) { r.add("removed %s %s", service, id) }

func (r *recorder) Scaled(service string, from, to int) { r.add("scaled %s %d->%d", service, from, to) }

func (r *recorder) Queued(service string, waited time.Duration, wake scaler.Wake, outcome scaler.QueueOutcome) {
	r.add("queued %s %s %s", service, wake, outcome)
	if outcome == scaler.QueueServed {
		r.mu.Lock()
		r.queueWait = append(r.queueWait, waited)
		r.mu.Unlock()
	}
}

// first returns the first element of one of the recorder's slices, read
// under its lock, or fails the test (outside the lock: the scaler's cleanup
// still reports to the recorder).
func first[T any](t *testing.T, r *recorder, what string, list *[]T) T {
	t.Helper()
	r.mu.Lock()
	l := slices.Clone(*list)
	r.mu.Unlock()
	if len(l) == 0 {
		t.Fatalf("no %s recorded; calls %q", what, r.all())
	}
	return l[0]
}

// all returns the calls so far.
func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// count counts the calls equal to call.
func (r *recorder) count(call string) int {
	n := 0
	for _, c := range r.all() {
		if c == call {
			n++
		}
	}
	return n
}

func (r *recorder) has(call string) func() bool {
	return func() bool { return r.count(call) > 0 }
}

func newObservedScaler(t *testing.T) (*scaler.Scaler, *scalertest.Fake, *recorder) {
	t.Helper()
	rec := &recorder{}
	// A standby for every service, used or not: these tests start from one.
	sc, f := newScalerWith(t, scaler.Options{Observer: rec, StandbyIdle: -1})
	return sc, f, rec
}

func TestServiceObserverColdStart(t *testing.T) {
	sc, f, rec := newObservedScaler(t)
	svc := apply(t, sc, svcConfig(nil))
	waitFor(t, "standby created", standbyReady(svc))
	out := make(chan acquired, 1)
	acquireAsync(svc, 0, out)
	waitFor(t, "container started", started(f, 1))
	id := f.StartedIDs()[0]
	time.Sleep(20 * time.Millisecond) // a start that takes a while
	f.Ready(id)
	a := receive(t, out)
	if a.err != nil {
		t.Fatal(a.err)
	}
	a.lease.Release()

	if n := rec.count("started hello " + id); n != 1 {
		t.Errorf("InstanceStarted for %s %d times, want once; calls %q", id, n, rec.all())
	}
	if n := rec.count("queued hello start served"); n != 1 {
		t.Errorf("Queued(start, served) %d times, want once; calls %q", n, rec.all())
	}
	if n := rec.count("scaled hello 0->1"); n != 1 {
		t.Errorf("Scaled 0->1 %d times, want once; calls %q", n, rec.all())
	}
	took := first(t, rec, "cold start duration", &rec.coldTook)
	waited := first(t, rec, "queue wait", &rec.queueWait)
	if took < 20*time.Millisecond || took > 5*time.Second {
		t.Errorf("cold start took %v, want at least the 20ms before ready", took)
	}
	if waited < took || waited != a.lease.Waited {
		t.Errorf("queue wait %v, want the lease's %v and no less than the start's %v", waited, a.lease.Waited, took)
	}

	// A warm request tells the observer nothing.
	before := len(rec.all())
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if got := rec.all(); len(got) != before {
		t.Errorf("a warm request made calls %q", got[before:])
	}
}

// An instance that exited is first met as a refused connection, and the
// loop stops it (it is draining and empty) before Podman's died event
// comes: it is still reported as a crash, once, with its exit code.
func TestServiceObserverCrashMetAsRefusal(t *testing.T) {
	sc, f, rec := newObservedScaler(t)
	f.SetAutoReady(true)
	f.SetLogs("panic: config file missing")
	svc := apply(t, sc, svcConfig(nil))
	waitFor(t, "standby created", standbyReady(svc))
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	id := f.StartedIDs()[0]
	deliver := f.ExitLate(id, 2)
	attempts := 0
	err = svc.Try(context.Background(), func(addr string) error {
		if attempts++; attempts == 1 {
			return fmt.Errorf("dial tcp %s: %w", addr, scaler.ErrRefused)
		}
		return nil
	})
	if err != nil || attempts != 2 {
		t.Fatalf("Try: %v after %d attempts, want success on the second", err, attempts)
	}
	waitFor(t, "removal reported", rec.has("removed hello "+id))
	deliver() // the late event finds the instance gone: nothing more
	time.Sleep(50 * time.Millisecond)
	if n := rec.count("crashed hello " + id); n != 1 {
		t.Fatalf("InstanceCrashed %d times, want once; calls %q", n, rec.all())
	}
	c := first(t, rec, "crash", &rec.crashes)
	if c.ExitCode != 2 || c.Was != "draining" || !slices.Equal(c.Logs, []string{"panic: config file missing"}) {
		t.Errorf("crash = %+v, want exit code 2, was draining, with the logs", c)
	}
	if got := svc.Stats.Crashes.Load(); got != 1 {
		t.Errorf("crashes counted: %d, want 1", got)
	}
}

func TestServiceObserverCrash(t *testing.T) {
	sc, f, rec := newObservedScaler(t)
	f.SetAutoReady(true)
	f.SetLogs("allocating", "Killed")
	svc := apply(t, sc, svcConfig(nil))
	waitFor(t, "standby created", standbyReady(svc))
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	id := f.StartedIDs()[0]
	f.Exit(id, 137)
	waitFor(t, "removal reported", rec.has("removed hello "+id))

	if n := rec.count("crashed hello " + id); n != 1 {
		t.Fatalf("InstanceCrashed %d times, want once; calls %q", n, rec.all())
	}
	c := first(t, rec, "crash", &rec.crashes)
	if c.ExitCode != 137 || !c.OOMKilled || c.Was != "ready" || !slices.Equal(c.Logs, []string{"allocating", "Killed"}) {
		t.Errorf("crash = %+v, want exit code 137, OOM killed, was ready, with the logs", c)
	}
	if n := rec.count("scaled hello 1->0"); n != 1 {
		t.Errorf("Scaled 1->0 %d times, want once; calls %q", n, rec.all())
	}
	calls := rec.all()
	if slices.Index(calls, "crashed hello "+id) > slices.Index(calls, "removed hello "+id) {
		t.Errorf("removal reported before the crash: %q", calls)
	}
}

func TestServiceObserverStartFailure(t *testing.T) {
	sc, f, rec := newObservedScaler(t)
	f.SetLogs("panic: boom")
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.MaxInstances = 1 }))
	waitFor(t, "standby created", standbyReady(svc))
	out := make(chan acquired, 2)
	acquireAsync(svc, 0, out)
	acquireAsync(svc, 1, out)
	waitFor(t, "two requests queued", queued(svc, 2))
	waitFor(t, "container started", started(f, 1))
	id := f.StartedIDs()[0]
	f.Exit(id, 3)
	for range 2 {
		if a := receive(t, out); a.err == nil {
			t.Fatal("a request got an instance that never started")
		}
	}
	if n := rec.count("start failed hello " + id); n != 1 {
		t.Fatalf("InstanceStartFailed %d times, want once; calls %q", n, rec.all())
	}
	se := first(t, rec, "start failure", &rec.failures)
	if se.ExitCode != 3 || !slices.Equal(se.Logs, []string{"panic: boom"}) {
		t.Errorf("start error = %+v, want exit code 3 and the logs", se)
	}
	if n := rec.count("queued hello none failed"); n != 2 {
		t.Errorf("Queued(failed) %d times, want 2; calls %q", n, rec.all())
	}
	if rec.count("started hello "+id) != 0 || rec.count("crashed hello "+id) != 0 {
		t.Errorf("a failed start also reported as started or crashed: %q", rec.all())
	}
	waitFor(t, "scale back to zero reported", rec.has("scaled hello 1->0"))

	// Within the backoff, a request fails at once and says so.
	if _, err := svc.Acquire(context.Background()); err == nil {
		t.Fatal("Acquire within the backoff succeeded")
	}
	if n := rec.count("queued hello none failed"); n != 3 {
		t.Errorf("Queued(failed) %d times after a fast failure, want 3; calls %q", n, rec.all())
	}
}

func TestServiceObserverQueueFullAndTimeout(t *testing.T) {
	sc, _, rec := newObservedScaler(t)
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) {
		c.MaxInstances, c.QueueSize, c.QueueTimeout = 1, 1, 300*time.Millisecond
	}))
	waitFor(t, "standby created", standbyReady(svc))
	out := make(chan acquired, 1)
	acquireAsync(svc, 0, out)
	waitFor(t, "a request queued", queued(svc, 1))
	if _, err := svc.Acquire(context.Background()); !errors.Is(err, scaler.ErrQueueFull) {
		t.Fatalf("second Acquire: %v, want ErrQueueFull", err)
	}
	if a := receive(t, out); !errors.Is(a.err, scaler.ErrQueueTimeout) {
		t.Fatalf("first Acquire: %v, want ErrQueueTimeout", a.err)
	}
	if rec.count("queued hello none full") != 1 || rec.count("queued hello none timeout") != 1 {
		t.Errorf("calls %q, want one full and one timeout", rec.all())
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, "a request queued", queued(svc, 1))
		cancel()
	}()
	if _, err := svc.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Acquire: %v", err)
	}
	if n := rec.count("queued hello none canceled"); n != 1 {
		t.Errorf("Queued(canceled) %d times, want once; calls %q", n, rec.all())
	}
}

func TestServiceObserverPauseResume(t *testing.T) {
	sc, f, rec := newObservedScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.PauseAfter = 100 * time.Millisecond }))
	waitFor(t, "standby created", standbyReady(svc))
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	id := f.StartedIDs()[0]
	waitFor(t, "pause reported", rec.has("paused hello "+id))
	waitFor(t, "instance paused", func() bool { return svc.Snapshot().Count("paused") == 1 })
	l, err = svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if l.Wake != scaler.WakeResume {
		t.Fatalf("lease woke by %v, want resume", l.Wake)
	}
	if n := rec.count("resumed hello " + id); n != 1 {
		t.Errorf("InstanceResumed %d times, want once; calls %q", n, rec.all())
	}
	if took := first(t, rec, "resume duration", &rec.resumed); took <= 0 {
		t.Errorf("resume took %v, want more than nothing", took)
	}
	if n := rec.count("queued hello resume served"); n != 1 {
		t.Errorf("Queued(resume, served) %d times, want once; calls %q", n, rec.all())
	}
	if n := rec.count("scaled hello 1->0"); n != 0 {
		t.Errorf("a pause was reported as scaling in: %q", rec.all())
	}
}

func TestServiceObserverRemove(t *testing.T) {
	sc, f, rec := newObservedScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(nil))
	waitFor(t, "standby created", standbyReady(svc))
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	id := f.StartedIDs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sc.Remove(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if n := rec.count("removed hello " + id); n != 1 {
		t.Errorf("InstanceRemoved for %s %d times, want once; calls %q", id, n, rec.all())
	}
	if n := rec.count("scaled hello 1->0"); n != 1 {
		t.Errorf("Scaled 1->0 %d times, want once; calls %q", n, rec.all())
	}
}

// With an observer, the warm path still allocates nothing: it calls none.
func TestServiceObserverWarmPathAllocatesNothing(t *testing.T) {
	sc, f, _ := newObservedScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(nil))
	ctx := context.Background()
	noop := func(string) error { return nil }
	if err := svc.Try(ctx, noop); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := svc.Try(ctx, noop); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a warm Try with an observer allocates %.1f times, want 0", allocs)
	}
}
