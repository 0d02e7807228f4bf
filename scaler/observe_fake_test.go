package scaler_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/podcell/podcell/caddymodule/observe"
	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// The scaler on the fake runtime feeds an observe.Hub: a cold start and a
// crash show in the metrics, the instance's output is collected while it
// lives, and the crash is an event.
func TestFakeDrivesObserveHub(t *testing.T) {
	f := scalertest.NewFake(t)
	f.SetAutoReady(true)
	hub := observe.NewHub(f)
	sc, err := scaler.New(context.Background(), f, scaler.Options{Observer: hub})
	if err != nil {
		t.Fatal(err)
	}
	hub.Watch(sc)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sc.Close(ctx)
		hub.Close()
	})
	svc, err := sc.Apply(scaler.ServiceConfig{
		Name: "hello", Image: "localhost/hello:latest", Concurrency: 1, MaxInstances: 2,
		PauseAfter: -1, IdleTimeout: time.Minute, StableWindow: time.Minute, DrainTimeout: 500 * time.Millisecond,
		QueueTimeout: 5 * time.Second, StartTimeout: 5 * time.Second, StopGrace: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()
	id := f.StartedIDs()[0]

	metrics := func() string {
		var b bytes.Buffer
		hub.Metrics.WritePrometheus(&b)
		return b.String()
	}
	for _, want := range []string{
		`podcell_cold_starts_total{service="hello"} 1` + "\n",
		`podcell_cold_start_duration_seconds_count{service="hello"} 1` + "\n",
		`podcell_queue_wait_seconds_count{service="hello"} 1` + "\n",
		`podcell_scale_events_total{service="hello",direction="up"} 1` + "\n",
		`podcell_instances{service="hello",state="ready"} 1` + "\n",
	} {
		if m := metrics(); !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}

	f.Write(id, "stdout", "listening")
	scalertest.Eventually(t, 5*time.Second, "the instance's output collected", func() bool { return len(hub.Logs.Recent("hello", 0)) == 1 })
	if l := hub.Logs.Recent("hello", 0)[0]; l.Text != "listening" || l.Stream != "stdout" || l.Instance != id {
		t.Errorf("collected %+v, want the instance's stdout line", l)
	}

	f.SetLogs("allocating", "Killed")
	f.Exit(id, 137)
	scalertest.Eventually(t, 5*time.Second, "the crash recorded", func() bool { return len(hub.Events.List("hello")) == 1 })
	ev := hub.Events.List("hello")[0]
	if ev.Kind != observe.KindOOMKill || ev.ExitCode == nil || *ev.ExitCode != 137 || ev.Instance != id || len(ev.Logs) != 2 {
		t.Errorf("event %+v, want an OOM kill of %s with exit code 137 and its last lines", ev, id)
	}
	scalertest.Eventually(t, 5*time.Second, "the crash counted", func() bool {
		m := metrics()
		return strings.Contains(m, `podcell_oom_kills_total{service="hello"} 1`+"\n") &&
			strings.Contains(m, `podcell_instance_crashes_total{service="hello"} 1`+"\n") &&
			strings.Contains(m, `podcell_instances{service="hello",state="ready"} 0`+"\n")
	})
	// Its output stays after it is gone.
	if n := len(hub.Logs.Recent("hello", 0)); n != 1 {
		t.Errorf("%d lines kept after the instance went, want 1", n)
	}
}
