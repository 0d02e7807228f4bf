package scaler_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// The default standby policy: a service keeps a standby container only
// while it is in use, and a service at rest does not run its loop.

func newDefaultScaler(t *testing.T, opts scaler.Options) (*scaler.Scaler, *scalertest.Fake) {
	t.Helper()
	sc, f := newScalerWith(t, opts)
	f.SetAutoReady(true)
	return sc, f
}

// A service never used has no container at all; its first request creates
// and starts one, and from then on a standby is kept.
func TestStandbyOnlyAfterUse(t *testing.T) {
	sc, f := newDefaultScaler(t, scaler.Options{})
	svc := apply(t, sc, svcConfig(nil))
	// The loop runs at once for a new service; a standby it wanted would
	// be in the snapshot as soon as that run ends.
	waitFor(t, "the loop's first run", func() bool { return scaler.Ticks(svc) >= 1 })
	if n := len(svc.Snapshot().Instances); n != 0 || f.Calls().Create != 0 {
		t.Fatalf("never-used service: %d instances, %d creates; want none", n, f.Calls().Create)
	}

	lease, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()
	created, started := f.CreatedIDs(), f.StartedIDs()
	if len(started) != 1 || len(created) < 1 || created[0] != started[0] {
		t.Fatalf("first start: created %v, started %v; want the start's own container created first", created, started)
	}
	waitFor(t, "a standby after the first use", standbyReady(svc))
	for _, inst := range svc.Snapshot().Instances {
		if inst.State == "standby" && inst.ID == started[0] {
			t.Fatalf("the standby is the serving container %s", inst.ID)
		}
	}
}

// Once the service's instances are gone and StandbyIdle has passed, its
// standby is removed (the loop wakes for it: nothing else does), and the
// next cold start creates its container again.
func TestStandbyRemovedAfterIdle(t *testing.T) {
	sc, f := newDefaultScaler(t, scaler.Options{StandbyIdle: 300 * time.Millisecond})
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.IdleTimeout = 200 * time.Millisecond }))
	lease, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()
	waitFor(t, "a standby after the first use", standbyReady(svc))
	waitFor(t, "the instance idled out and the standby removed", func() bool {
		return len(svc.Snapshot().Instances) == 0 && len(f.Leftovers()) == 0
	})

	creates := f.Calls().Create
	lease, err = svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()
	created, started := f.CreatedIDs(), f.StartedIDs()
	if len(started) != 2 || len(created) <= creates || !slices.Contains(created[creates:], started[1]) {
		t.Fatalf("cold start after the standby went: created %v (%d before), started %v; want a new container", created, creates, started)
	}
}

// A service at rest (nothing up, no standby) does not tick; a request
// still starts an instance at once, and the loop runs again while it is up.
func TestServiceAtRestDoesNotTick(t *testing.T) {
	sc, _ := newDefaultScaler(t, scaler.Options{})
	svc := apply(t, sc, svcConfig(nil)) // ticks every 50ms while up
	waitFor(t, "the loop's first run", func() bool { return scaler.Ticks(svc) >= 1 })
	before := scaler.Ticks(svc)
	time.Sleep(500 * time.Millisecond)
	if n := scaler.Ticks(svc) - before; n != 0 {
		t.Fatalf("the loop ran %d times in 500ms at rest; want 0", n)
	}
	lease, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	before = scaler.Ticks(svc)
	waitFor(t, "the loop ticking while an instance is up", func() bool { return scaler.Ticks(svc) >= before+3 })
}

// A standby is initialized once created (Runtime.Init), and the cold start
// starts it; with CreatedStandby
// it is only created.
func TestStandbyInitialized(t *testing.T) {
	for _, created := range []bool{false, true} {
		sc, f := newDefaultScaler(t, scaler.Options{CreatedStandby: created})
		svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.IdleTimeout = 200 * time.Millisecond }))
		lease, err := svc.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		lease.Release()
		waitFor(t, "a standby after the first use", standbyReady(svc))
		var standby string
		for _, inst := range svc.Snapshot().Instances {
			if inst.State == "standby" {
				standby = inst.ID
			}
		}
		info, err := f.Inspect(context.Background(), standby)
		if err != nil {
			t.Fatal(err)
		}
		want, inits := scaler.StateInitialized, 1
		if created {
			want, inits = scaler.StateCreated, 0
		}
		if info.State != want || f.Calls().Init != inits {
			t.Fatalf("created=%t: standby %s is %s after %d inits, want %s after %d", created, standby, info.State, f.Calls().Init, want, inits)
		}
		waitFor(t, "back to zero", func() bool { return svc.Snapshot().Up() == 0 })
		lease, err = svc.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		lease.Release()
		// (The next standby may be made meanwhile: its create and init.)
		if started := f.StartedIDs(); started[len(started)-1] != standby {
			t.Errorf("created=%t: cold start started %s, want the standby %s", created, started[len(started)-1], standby)
		}
	}
}
