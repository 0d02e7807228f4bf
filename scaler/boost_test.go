package scaler_test

import (
	"context"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// tierQuota256 is a 256 MB instance's own quota: 256/1769 of a core.
const tierQuota256 = 256 * 100000 / scaler.MBPerCore

func newBoostScaler(t *testing.T, opts scaler.Options) (*scaler.Scaler, *scalertest.Fake) {
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

// TestStartupBoost: a 256 MB instance is created with a whole core (its
// cpuset's one core caps the default 2) and has its tier's quota once it is
// ready, before its first request is served.
func TestStartupBoost(t *testing.T) {
	sc, f := newBoostScaler(t, scaler.Options{})
	f.SetAutoReady(true)
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.MemoryMB = 256 }))
	waitFor(t, "standby created", standbyReady(svc))
	id := f.CreatedIDs()[0]
	if spec, _ := f.Spec(id); spec.Limits.StartCPUQuota != 100000 {
		got := spec.Limits.StartCPUQuota
		t.Errorf("start quota = %d, want one core (100000)", got)
	}
	if got := f.CPUQuota(id); got != 100000 {
		t.Errorf("created with quota %d, want the boost", got)
	}
	err := svc.Try(context.Background(), func(addr string) error {
		if got := f.CPUQuota(id); got != tierQuota256 {
			t.Errorf("serving with quota %d, want the tier's %d", got, tierQuota256)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := svc.Stats.BoostDenied.Load(); n != 0 {
		t.Errorf("BoostDenied = %d", n)
	}
}

// TestStartupBoostOffAndLarge: no boost when the service turns it off, or
// when its own quota is already all of its cores (1769 MB).
func TestStartupBoostOffAndLarge(t *testing.T) {
	sc, f := newBoostScaler(t, scaler.Options{})
	for _, tc := range []struct {
		name string
		mod  func(*scaler.ServiceConfig)
	}{
		{"off", func(c *scaler.ServiceConfig) { c.Name, c.MemoryMB, c.StartupCPU = "off", 256, -1 }},
		{"one core", func(c *scaler.ServiceConfig) { c.Name, c.MemoryMB = "large", scaler.MBPerCore }},
	} {
		svc := apply(t, sc, svcConfig(tc.mod))
		waitFor(t, "standby created", standbyReady(svc))
		var spec scaler.ContainerSpec
		for _, id := range f.CreatedIDs() {
			if s, _ := f.Spec(id); s.Labels[scaler.LabelService] == svc.Name() {
				spec = s
			}
		}
		if spec.Limits.StartCPUQuota != 0 {
			t.Errorf("%s: start quota %d, want none", tc.name, spec.Limits.StartCPUQuota)
		}
	}
}

// TestStartupBoostBudget: with a budget of one boost, two simultaneous
// cold starts boost one; the other runs at its tier's quota from its start,
// and both serve at the tier's quota.
func TestStartupBoostBudget(t *testing.T) {
	sc, f := newBoostScaler(t, scaler.Options{StartupCPUBudget: 1})
	svc := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) { c.MemoryMB = 256; c.MaxInstances = 2 }))
	waitFor(t, "standby created", standbyReady(svc))
	out := make(chan acquired, 2)
	acquireAsync(svc, 0, out)
	acquireAsync(svc, 1, out)
	waitFor(t, "two starts", started(f, 2))
	ids := f.StartedIDs()
	// Neither is ready yet: one holds the boost, the other was lowered at once.
	waitFor(t, "the second start lowered", func() bool {
		q0, q1 := f.CPUQuota(ids[0]), f.CPUQuota(ids[1])
		return (q0 == 100000 && q1 == tierQuota256) || (q1 == 100000 && q0 == tierQuota256)
	})
	if n := svc.Stats.BoostDenied.Load(); n != 1 {
		t.Errorf("BoostDenied = %d, want 1", n)
	}
	f.Ready(ids[0])
	f.Ready(ids[1])
	for i := 0; i < 2; i++ {
		a := receive(t, out)
		if a.err != nil {
			t.Fatal(a.err)
		}
		defer a.lease.Release()
	}
	for _, id := range ids {
		if q := f.CPUQuota(id); q != tierQuota256 {
			t.Errorf("%s serves with quota %d, want %d", id, q, tierQuota256)
		}
	}
}
