package scaler_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// svcConfig is a service whose policy timers stay out of the way of a test
// (no pausing, no idling out, no scale-in) while the loop ticks every 50ms.
func svcConfig(mod func(*scaler.ServiceConfig)) scaler.ServiceConfig {
	c := scaler.ServiceConfig{
		Name: "hello", Image: "localhost/hello:latest",
		Concurrency: 1, MaxInstances: 3,
		PauseAfter: -1, IdleTimeout: time.Minute, StableWindow: time.Minute, DrainTimeout: 500 * time.Millisecond,
		QueueTimeout: 5 * time.Second, StartTimeout: 5 * time.Second, StopGrace: 100 * time.Millisecond,
	}
	if mod != nil {
		mod(&c)
	}
	return c
}

func newTestScaler(t *testing.T) (*scaler.Scaler, *scalertest.Fake) {
	t.Helper()
	// A standby for every service, used or not: most tests here start from
	// one (standby_test.go tests the default, a standby only after use).
	return newScalerWith(t, scaler.Options{StandbyIdle: -1})
}

// newScalerWith is a scaler with opts on a new fake runtime, closed when
// the test ends.
func newScalerWith(t *testing.T, opts scaler.Options) (*scaler.Scaler, *scalertest.Fake) {
	t.Helper()
	f := scalertest.NewFake(t)
	sc, err := scaler.New(context.Background(), f, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sc.Close(ctx)
	})
	return sc, f
}

func apply(t *testing.T, sc *scaler.Scaler, cfg scaler.ServiceConfig) *scaler.Service {
	t.Helper()
	svc, err := sc.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

type acquired struct {
	i     int
	lease scaler.Lease
	err   error
}

// acquireAsync calls Acquire in a goroutine and reports on out.
func acquireAsync(svc *scaler.Service, i int, out chan<- acquired) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := svc.Acquire(ctx)
		out <- acquired{i, l, err}
	}()
}

func receive(t *testing.T, ch <-chan acquired) acquired {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no Acquire returned")
		return acquired{}
	}
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	scalertest.Eventually(t, 5*time.Second, "timed out waiting for "+what, cond)
}

func queued(svc *scaler.Service, n int) func() bool {
	return func() bool { return scaler.QueueLen(svc) == n }
}

func started(f *scalertest.Fake, n int) func() bool {
	return func() bool { return len(f.StartedIDs()) == n }
}

// standbyReady: the service holds a created standby container. Tests wait
// for it before their first Acquire, so the first start takes the standby.
func standbyReady(svc *scaler.Service) func() bool {
	return func() bool {
		for _, i := range svc.Snapshot().Instances {
			if i.State == "standby" && i.ID != "" {
				return true
			}
		}
		return false
	}
}

func TestServiceAcquireFromZero(t *testing.T) {
	sc, f := newTestScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(nil))
	waitFor(t, "standby created", standbyReady(svc))
	ctx := context.Background()

	lease, err := svc.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lease.Wake != scaler.WakeStart {
		t.Errorf("Wake = %v, want start", lease.Wake)
	}
	ids := f.StartedIDs()
	if len(ids) != 1 {
		t.Fatalf("started %v, want exactly one container", ids)
	}
	if want := f.Addr(ids[0]); lease.Addr != want {
		t.Errorf("lease.Addr = %q, want the started container's %q", lease.Addr, want)
	}
	if n := svc.Stats.ColdStarts.Load(); n != 1 {
		t.Errorf("ColdStarts = %d, want 1", n)
	}
	snap := svc.Snapshot()
	if snap.Count("ready") != 1 || snap.Inflight != 1 || snap.Queued != 0 {
		t.Errorf("snapshot = %+v, want one ready instance with one request", snap)
	}
	lease.Release()

	// The next request finds the ready instance at once.
	lease2, err := svc.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lease2.Release()
	if lease2.Wake != scaler.WakeNone || lease2.Waited != 0 || lease2.Addr != lease.Addr {
		t.Errorf("second lease = %+v, want the same instance without waiting", lease2)
	}
	if got := f.StartedIDs(); len(got) != 1 {
		t.Errorf("started %v after the second Acquire, want still one", got)
	}
}

func TestServiceConcurrentAcquires(t *testing.T) {
	cases := []struct {
		n, concurrency, maxInstances int
		want                         int // instances started
	}{
		{n: 5, concurrency: 2, maxInstances: 10, want: 3},
		{n: 4, concurrency: 2, maxInstances: 10, want: 2},
		{n: 3, concurrency: 4, maxInstances: 10, want: 1},
		{n: 10, concurrency: 2, maxInstances: 3, want: 3}, // ceil(10/2) = 5, capped
		{n: 6, concurrency: 1, maxInstances: 6, want: 6},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d requests, concurrency %d, max %d", tc.n, tc.concurrency, tc.maxInstances), func(t *testing.T) {
			sc, f := newTestScaler(t)
			svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) {
				c.Concurrency, c.MaxInstances = tc.concurrency, tc.maxInstances
			}))
			waitFor(t, "standby created", standbyReady(svc))
			out := make(chan acquired, tc.n)
			for i := range tc.n {
				acquireAsync(svc, i, out)
			}
			waitFor(t, "all requests queued", queued(svc, tc.n))
			if got := scaler.CountState(svc, "starting"); got != tc.want {
				t.Errorf("%d instances starting, want %d", got, tc.want)
			}
			waitFor(t, "containers started", started(f, tc.want))
			ids := f.StartedIDs()
			addrs := map[string]bool{}
			for _, id := range ids {
				addrs[f.Addr(id)] = true
				f.Ready(id)
			}

			// Every started instance serves its full concurrency to waiters.
			served := min(tc.n, tc.want*tc.concurrency)
			var leases []scaler.Lease
			for range served {
				a := receive(t, out)
				if a.err != nil {
					t.Fatalf("request %d: %v", a.i, a.err)
				}
				if a.lease.Wake != scaler.WakeStart || !addrs[a.lease.Addr] {
					t.Errorf("request %d: lease %+v, want a cold-started instance", a.i, a.lease)
				}
				leases = append(leases, a.lease)
			}
			if q := svc.Snapshot().Queued; q != tc.n-served {
				t.Errorf("%d still queued, want %d", q, tc.n-served)
			}
			// The rest get slots as they are released.
			for range tc.n - served {
				leases[0].Release()
				leases = leases[1:]
				a := receive(t, out)
				if a.err != nil {
					t.Fatalf("request %d: %v", a.i, a.err)
				}
				if a.lease.Wake != scaler.WakeNone || !addrs[a.lease.Addr] {
					t.Errorf("request %d: lease %+v, want a released slot", a.i, a.lease)
				}
				leases = append(leases, a.lease)
			}
			for _, l := range leases {
				l.Release()
			}
			if got := f.StartedIDs(); len(got) != tc.want {
				t.Errorf("started %d containers in all, want %d", len(got), tc.want)
			}
			if snap := svc.Snapshot(); snap.Inflight != 0 || snap.Queued != 0 || snap.Count("ready") != tc.want {
				t.Errorf("after release: %+v, want %d idle ready instances", snap, tc.want)
			}
		})
	}
}

func TestServiceQueueFull(t *testing.T) {
	sc, f := newTestScaler(t)
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.MaxInstances = 1; c.QueueSize = 2 }))
	waitFor(t, "standby created", standbyReady(svc))
	out := make(chan acquired, 2)
	acquireAsync(svc, 0, out)
	acquireAsync(svc, 1, out)
	waitFor(t, "two requests queued", queued(svc, 2))

	_, err := svc.Acquire(context.Background())
	if !errors.Is(err, scaler.ErrQueueFull) {
		t.Fatalf("third Acquire: %v, want ErrQueueFull", err)
	}
	if n := svc.Stats.QueueFull.Load(); n != 1 {
		t.Errorf("QueueFull = %d, want 1", n)
	}

	// The queued ones are still served.
	waitFor(t, "container started", started(f, 1))
	f.Ready(f.StartedIDs()[0])
	for range 2 {
		a := receive(t, out)
		if a.err != nil {
			t.Fatalf("queued request %d: %v", a.i, a.err)
		}
		a.lease.Release()
	}
}

func TestServiceQueueTimeout(t *testing.T) {
	sc, f := newTestScaler(t)
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.QueueTimeout = 200 * time.Millisecond }))
	waitFor(t, "standby created", standbyReady(svc))

	_, err := svc.Acquire(context.Background())
	if !errors.Is(err, scaler.ErrQueueTimeout) {
		t.Fatalf("Acquire: %v, want ErrQueueTimeout", err)
	}
	if n := svc.Stats.QueueTimeout.Load(); n != 1 {
		t.Errorf("QueueTimeout = %d, want 1", n)
	}
	snap := svc.Snapshot()
	if snap.Queued != 0 || snap.Inflight != 0 {
		t.Errorf("after the timeout: %+v, want nothing queued or in flight", snap)
	}
	// It did try: the instance is still starting and serves once ready.
	if snap.Count("starting") != 1 {
		t.Errorf("after the timeout: %+v, want the instance still starting", snap)
	}
	waitFor(t, "container started", started(f, 1))
	f.Ready(f.StartedIDs()[0])
	waitFor(t, "instance ready", func() bool { return svc.Snapshot().Count("ready") == 1 })
	lease, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()
}

func TestServiceAcquireContextCanceled(t *testing.T) {
	sc, _ := newTestScaler(t)
	svc := apply(t, sc, svcConfig(nil))
	waitFor(t, "standby created", standbyReady(svc))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := svc.Acquire(ctx)
		errc <- err
	}()
	waitFor(t, "request queued", queued(svc, 1))
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Acquire: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Acquire did not return after cancel")
	}
	if q := svc.Snapshot().Queued; q != 0 {
		t.Errorf("%d still queued after cancel", q)
	}
}

func TestServiceStartFailure(t *testing.T) {
	sc, f := newTestScaler(t)
	f.SetLogs("booting", "panic: boom")
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.MaxInstances = 1 }))
	waitFor(t, "standby created", standbyReady(svc))
	out := make(chan acquired, 3)
	for i := range 3 {
		acquireAsync(svc, i, out)
	}
	waitFor(t, "three requests queued", queued(svc, 3))
	waitFor(t, "container started", started(f, 1))
	id := f.StartedIDs()[0]
	f.Exit(id, 3)

	var first *scaler.StartError
	for range 3 {
		a := receive(t, out)
		var se *scaler.StartError
		if !errors.As(a.err, &se) {
			t.Fatalf("request %d: %v, want a *StartError", a.i, a.err)
		}
		if se.Service != "hello" || se.ExitCode != 3 || !strings.Contains(se.Reason, "exited") ||
			!slices.Equal(se.Logs, []string{"booting", "panic: boom"}) {
			t.Errorf("request %d: StartError %+v, want service hello, exit code 3, an exit reason and the logs", a.i, se)
		}
		if !strings.Contains(se.Error(), "panic: boom") {
			t.Errorf("error text %q lacks the logs", se.Error())
		}
		if first == nil {
			first = se
		}
	}
	if n := svc.Stats.StartFails.Load(); n != 1 {
		t.Errorf("StartFails = %d, want 1", n)
	}
	waitFor(t, "failed container removed", func() bool { return !slices.Contains(f.Leftovers(), id) })

	// Within the backoff, a request fails fast with the same error and
	// nothing is created or started for it. (The loop keeps one standby
	// container; wait for it so its creation is not counted.)
	waitFor(t, "standby created", standbyReady(svc))
	before := f.Calls()
	_, err := svc.Acquire(context.Background())
	if err != first {
		t.Fatalf("Acquire within the backoff: %v, want the same *StartError", err)
	}
	if after := f.Calls(); after.Create != before.Create || after.Start != before.Start {
		t.Errorf("Acquire within the backoff created or started a container: calls %+v then %+v", before, after)
	}
	if snap := svc.Snapshot(); snap.Count("starting") != 0 || snap.Queued != 0 {
		t.Errorf("after the fast failure: %+v, want nothing starting or queued", snap)
	}
}

func TestServiceReleaseFIFO(t *testing.T) {
	sc, f := newTestScaler(t)
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.MaxInstances = 1 }))
	waitFor(t, "standby created", standbyReady(svc))
	out := make(chan acquired, 3)
	for i := range 3 {
		acquireAsync(svc, i, out)
		waitFor(t, fmt.Sprintf("request %d queued", i), queued(svc, i+1))
	}
	waitFor(t, "container started", started(f, 1))
	f.Ready(f.StartedIDs()[0])

	for i := range 3 {
		a := receive(t, out)
		if a.err != nil {
			t.Fatalf("request %d: %v", a.i, a.err)
		}
		if a.i != i {
			t.Fatalf("request %d got the instance, want request %d (FIFO)", a.i, i)
		}
		wantWake := scaler.WakeNone
		if i == 0 {
			wantWake = scaler.WakeStart
		}
		if a.lease.Wake != wantWake {
			t.Errorf("request %d: Wake %v, want %v", i, a.lease.Wake, wantWake)
		}
		if snap := svc.Snapshot(); snap.Inflight != 1 || snap.Queued != 2-i {
			t.Errorf("with request %d served: %+v, want 1 in flight and %d queued", i, snap, 2-i)
		}
		a.lease.Release()
	}
	if got := f.StartedIDs(); len(got) != 1 {
		t.Errorf("started %v, want one container", got)
	}
}

func TestServiceClose(t *testing.T) {
	sc, f := newTestScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(nil))
	waitFor(t, "standby created", standbyReady(svc))
	out := make(chan acquired, 4)
	for i := range 3 {
		acquireAsync(svc, i, out)
	}
	var leases []scaler.Lease
	for range 3 {
		a := receive(t, out)
		if a.err != nil {
			t.Fatal(a.err)
		}
		leases = append(leases, a.lease)
	}
	acquireAsync(svc, 3, out) // max_instances reached: it waits
	waitFor(t, "request queued", queued(svc, 1))
	waitFor(t, "standby created", standbyReady(svc))
	if n := len(f.Leftovers()); n < 4 {
		t.Fatalf("%d containers exist, want 3 instances and a standby", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sc.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if a := receive(t, out); !errors.Is(a.err, scaler.ErrClosed) {
		t.Errorf("waiting request: %v, want ErrClosed", a.err)
	}
	for _, l := range leases {
		l.Release() // in-flight requests end after the close
	}
	if got := f.Leftovers(); len(got) != 0 {
		t.Errorf("containers left after Close: %v", got)
	}
	if _, err := svc.Acquire(context.Background()); !errors.Is(err, scaler.ErrClosed) {
		t.Errorf("Acquire after Close: %v, want ErrClosed", err)
	}
	if _, err := sc.Apply(svcConfig(nil)); !errors.Is(err, scaler.ErrClosed) {
		t.Errorf("Apply after Close: %v, want ErrClosed", err)
	}
}

// A container whose Create is still in flight when Close begins must not
// outlive the scaler, whether it was a starting instance or the standby.
// Close is held in the Stop of the first instance while those Creates return.
func TestServiceCloseRemovesContainerCreatedDuringClose(t *testing.T) {
	sc, f := newTestScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.MaxInstances = 2 }))
	waitFor(t, "standby created", standbyReady(svc))

	createGate := make(chan struct{})
	f.SetCreateGate(createGate)
	lease, err := svc.Acquire(context.Background()) // starts the standby
	if err != nil {
		t.Fatal(err)
	}
	releaseStop := f.HoldStop(f.StartedIDs()[0])
	// With nothing starting, the loop prepares the next standby (its Create
	// waits at the gate); only then does a second instance start.
	waitFor(t, "next standby being created", func() bool { return scaler.CountState(svc, "standby") == 1 })
	out := make(chan acquired, 1)
	acquireAsync(svc, 1, out) // starts a second instance, whose Create waits
	waitFor(t, "second instance starting", func() bool { return scaler.CountState(svc, "starting") == 1 })

	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- sc.Close(ctx)
	}()
	if a := receive(t, out); !errors.Is(a.err, scaler.ErrClosed) {
		t.Fatalf("waiting request: %v, want ErrClosed", a.err)
	}
	lease.Release()
	// Close has begun; now the pending Creates return.
	close(createGate)
	waitFor(t, "second instance no longer starting", func() bool { return scaler.CountState(svc, "starting") == 0 })
	releaseStop()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if n := f.Calls().Create; n < 3 {
		t.Fatalf("%d containers created, want the first standby, a second instance and the next standby", n)
	}
	waitFor(t, "every container removed", func() bool { return len(f.Leftovers()) == 0 })
}

// Scaler.Remove takes the service's instances down and ends its loop
// (the scaler lives on, e.g. across Caddy reloads).
func TestServiceRemove(t *testing.T) {
	sc, f := newTestScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(nil))
	waitFor(t, "standby created", standbyReady(svc))
	lease, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sc.Remove(ctx, "hello"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := f.Leftovers(); len(got) != 0 {
		t.Errorf("containers left after Remove: %v", got)
	}
	if sc.Service("hello") != nil {
		t.Error("removed service still listed")
	}
	if _, err := svc.Acquire(context.Background()); !errors.Is(err, scaler.ErrClosed) {
		t.Errorf("Acquire after Remove: %v, want ErrClosed", err)
	}
	if err := sc.Remove(ctx, "hello"); err == nil {
		t.Error("removing it again succeeded")
	}
}

func TestServiceRemoveEndsLoop(t *testing.T) {
	sc, _ := newTestScaler(t)
	svc := apply(t, sc, svcConfig(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sc.Remove(ctx, "hello"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	select {
	case <-scaler.LoopDone(svc):
	case <-time.After(2 * time.Second):
		t.Error("the removed service's loop still runs")
	}
}

// Snapshot (like resync, onDied and shutdown) reads instance ids under the
// service's lock while starting instances get theirs; a regression test for
// the data race on instance.id. Only -race can fail it.
func TestServiceInstanceIDDataRace(t *testing.T) {
	sc, f := newTestScaler(t)
	svc := apply(t, sc, svcConfig(nil))
	out := make(chan acquired, 3)
	for i := range 3 { // at most one of them can use the standby
		acquireAsync(svc, i, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(f.StartedIDs()) < 3 && time.Now().Before(deadline) {
		svc.Snapshot()
	}
	for _, id := range f.StartedIDs() {
		f.Ready(id)
	}
	for range 3 {
		if a := receive(t, out); a.err != nil {
			t.Fatal(a.err)
		} else {
			a.lease.Release()
		}
	}
}

// The warm request path (Try on a ready instance, with a function that
// captures the caller's variables as the handler's does) must not allocate.
func TestServiceWarmPathAllocatesNothing(t *testing.T) {
	sc, f := newTestScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(nil))
	ctx := context.Background()
	var got string
	var wait scaler.Wait
	fn := func(addr string, w scaler.Wait) error {
		got, wait = addr, w
		return nil
	}
	if err := svc.TryWait(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if want := f.Addr(f.StartedIDs()[0]); got != want || wait.Wake != scaler.WakeStart {
		t.Fatalf("first Try: %q after %v, want the started instance's %q after a cold start", got, wait.Wake, want)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := svc.TryWait(ctx, fn); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a warm Try allocates %.1f times, want 0", allocs)
	}
	if wait.Wake != scaler.WakeNone || wait.Waited != 0 {
		t.Errorf("a warm Try waited: %+v", wait)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		if err := svc.Try(ctx, func(addr string) error { got = addr; return nil }); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a warm Try (without the wait) allocates %.1f times, want 0", allocs)
	}
}

// Try gives the slot back whatever fn does: returns, fails, panics.
func TestServiceTryReleases(t *testing.T) {
	sc, f := newTestScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(nil)) // concurrency 1
	ctx := context.Background()
	boom := errors.New("boom")
	if err := svc.Try(ctx, func(string) error { return boom }); err != boom {
		t.Fatalf("Try returned %v, want fn's error", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("fn's panic did not reach Try's caller")
			}
		}()
		svc.Try(ctx, func(string) error { panic("fn panics") })
	}()
	if snap := svc.Snapshot(); snap.Inflight != 0 || snap.Count("ready") != 1 {
		t.Fatalf("after an error and a panic: %+v; want the instance ready with nothing in flight", snap)
	}
	calls := 0
	if err := svc.Try(ctx, func(string) error { calls++; return nil }); err != nil || calls != 1 {
		t.Fatalf("Try after a panic: %v, %d calls; want the free instance at once", err, calls)
	}
	if n := len(f.StartedIDs()); n != 1 {
		t.Errorf("%d instances started, want 1: the slot came back each time", n)
	}
}

// An instance that refuses the connection takes no more requests, and Try
// runs fn once more on another instance, started for it; a second refusal
// is returned as it is, and so is a refusal when the caller gave up.
func TestServiceRefusedInstanceTakesNoMoreRequests(t *testing.T) {
	sc, f := newTestScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(nil))
	waitFor(t, "standby created", standbyReady(svc))
	ctx := context.Background()

	var first string
	if err := svc.Try(ctx, func(addr string) error { first = addr; return nil }); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	var waits []scaler.Wait
	err := svc.TryWait(ctx, func(addr string, w scaler.Wait) error {
		addrs, waits = append(addrs, addr), append(waits, w)
		if len(addrs) == 1 {
			snap := svc.Snapshot()
			if snap.Count("ready") != 1 || snap.Inflight != 1 {
				t.Errorf("while the first attempt runs: %+v; want it in flight on the ready instance", snap)
			}
			return fmt.Errorf("dial: %w", scaler.ErrRefused)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 2 || addrs[0] != first || addrs[1] == first || waits[1].Wake != scaler.WakeStart {
		t.Fatalf("attempts on %v (waits %+v); want the ready instance %s, then a new one started for the request", addrs, waits, first)
	}
	snap := svc.Snapshot()
	for _, i := range snap.Instances {
		if i.Addr == first && i.State == "ready" {
			t.Fatalf("after a refused connection: %+v; want the refusing instance out of service", snap)
		}
	}
	if snap.Inflight != 0 || snap.Count("ready") != 1 {
		t.Fatalf("after a refused connection: %+v; want the new instance ready, nothing in flight", snap)
	}

	// Refused twice: the second refusal is the answer, and the second
	// instance stays in service (as the handler had it before Try).
	calls := 0
	refused := fmt.Errorf("dial tcp: %w", scaler.ErrRefused)
	if err := svc.Try(ctx, func(string) error { calls++; return refused }); err != refused || calls != 2 {
		t.Fatalf("refused twice: %v after %d calls, want fn's error after 2", err, calls)
	}
	// A caller that gave up gets no second attempt.
	cctx, cancel := context.WithCancel(ctx)
	calls = 0
	err = svc.Try(cctx, func(string) error { calls++; cancel(); return refused })
	if err != refused || calls != 1 {
		t.Fatalf("refused after the caller gave up: %v after %d calls, want fn's error after 1", err, calls)
	}
	if snap := svc.Snapshot(); snap.Inflight != 0 {
		t.Fatalf("%d requests still in flight", snap.Inflight)
	}
}

// A standby create that fails (an image that does not exist) is retried
// with backoff, reported once per streak, and tried again at once when a
// new revision comes. Before, the loop retried on every tick.
func TestServiceStandbyCreateBackoff(t *testing.T) {
	sc, f, obs := newObservedScaler(t)
	f.FailCreate(errors.New("localhost/typo:latest: image not known"))
	// pause_after 200ms makes the policy tick every few tens of ms.
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.PauseAfter = 200 * time.Millisecond }))
	time.Sleep(2500 * time.Millisecond)
	// Backoff 1 s, then 2 s: creates at 0 s and 1 s, the next not before 3 s.
	if n := f.Calls().Create; n < 1 || n > 3 {
		t.Errorf("%d creates in 2.5 s of failing, want 1 to 3 (backoff 1 s, 2 s)", n)
	}
	obs.mu.Lock()
	failures := slices.Clone(obs.failures)
	obs.mu.Unlock()
	if len(failures) != 1 {
		t.Errorf("%d start failures reported for one streak, want 1", len(failures))
	} else if !strings.Contains(failures[0].Error(), "image not known") {
		t.Errorf("the report does not say why: %v", failures[0])
	}

	// The fixed image is a new revision: its standby is created at once,
	// not after the backoff.
	f.FailCreate(nil)
	apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) {
		c.PauseAfter = 200 * time.Millisecond
		c.Image = "localhost/hello:v2"
	}))
	waitFor(t, "standby of the new revision", standbyReady(svc))
}

// RemoveInBackground returns at once even with an in-flight request and an
// hour of drain_timeout; the name is free for a new service meanwhile; the
// old instances go when the request ends, and only they do.
func TestServiceRemoveInBackground(t *testing.T) {
	sc, f := newTestScaler(t)
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.DrainTimeout = time.Hour }))
	lease, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	old := f.StartedIDs()[0]

	returned := make(chan error, 1)
	go func() { returned <- sc.RemoveInBackground("hello") }()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RemoveInBackground waited for the drain")
	}
	if sc.Service("hello") != nil {
		t.Fatal("the removed service is still listed")
	}
	again := apply(t, sc, svcConfig(nil))
	if again == svc {
		t.Fatal("Apply after the removal returned the draining service")
	}
	l2, err := again.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l2.Release()
	if !slices.Contains(f.Leftovers(), old) {
		t.Fatal("the in-flight request's instance was removed before the request ended")
	}

	lease.Release()
	waitFor(t, "the drained instance removed", func() bool { return !slices.Contains(f.Leftovers(), old) })
	for _, id := range f.StartedIDs()[1:] {
		if !slices.Contains(f.Leftovers(), id) {
			t.Errorf("the new service's instance %s was removed with the old one", id)
		}
	}
}

// Apply refuses a service bandwidth above what 4 cores get under the
// scaler's bandwidth_per_core, naming the service, the field and the cap.
func TestApplyBandwidthCap(t *testing.T) {
	sc, _ := newScalerWith(t, scaler.Options{BandwidthPerCoreMbit: 100})
	cfg := scaler.ServiceConfig{Name: "fast", Image: "localhost/x:1", BandwidthMbit: 500}
	if _, err := sc.Apply(cfg); err == nil || !strings.Contains(err.Error(), "service fast: bandwidth 500 Mbit/s") || !strings.Contains(err.Error(), "at most 400 Mbit/s") {
		t.Errorf("bandwidth 500 at 100 per core: %v, want an error naming the service, bandwidth and 400", err)
	}
	cfg.BandwidthMbit = 400
	if _, err := sc.Apply(cfg); err != nil {
		t.Error(err)
	}
}
