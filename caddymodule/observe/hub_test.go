package observe

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
)

func TestHubFansOut(t *testing.T) {
	rt := newStreamRuntime()
	h := NewHub(rt)
	defer h.Close()

	h.InstanceStarted("web", "0123456789abcdef", time.Second)
	if f := h.collector.Following(); !slices.Equal(f, []string{"0123456789abcdef"}) {
		t.Errorf("following %v after a start, want the instance", f)
	}
	rt.stream("0123456789abcdef") <- scaler.LogLine{Time: time.Now(), Stream: "stdout", Text: "up"}
	waitUntil(t, "the instance's output", func() bool { return h.Logs.Has("web") })

	h.InstanceCrashed("web", "0123456789abcdef", scaler.Crash{ExitCode: 137, OOMKilled: true, Was: "ready", Logs: []string{"Killed"}})
	h.InstanceRemoved("web", "0123456789abcdef")
	waitUntil(t, "the follow to stop", func() bool { return len(h.collector.Following()) == 0 })
	h.InstanceStartFailed("web", "", &scaler.StartError{Service: "web", Reason: "the app exited at once", ExitCode: 2,
		Logs: []string{"bad flag"}, Err: errors.New("boom")})
	h.RequestDone("web", 502, time.Millisecond, "")
	h.RequestDone("web", 404, time.Millisecond, "")

	evs := h.Events.List("web")
	if len(evs) != 3 {
		t.Fatalf("events %+v, want an OOM kill, a start failure and a 502", evs)
	}
	kinds := map[string]Event{}
	for _, ev := range evs {
		kinds[ev.Kind] = ev
	}
	if ev := kinds[KindOOMKill]; ev.ExitCode == nil || *ev.ExitCode != 137 || ev.Instance != "0123456789ab" || !slices.Equal(ev.Logs, []string{"Killed"}) {
		t.Errorf("OOM kill event %+v", ev)
	}
	if ev := kinds[KindStartFailure]; ev.ExitCode == nil || *ev.ExitCode != 2 || ev.Message != "the app exited at once: boom" {
		t.Errorf("start failure event %+v", ev)
	}
	if ev := kinds[KindHTTP5xx]; ev.Status != 502 || ev.Message != "Bad Gateway" {
		t.Errorf("5xx event %+v", ev)
	}

	s := scrape(t, h.Metrics)
	for name, want := range map[string]float64{"podcell_cold_starts_total": 1, "podcell_oom_kills_total": 1,
		"podcell_instance_crashes_total": 1, "podcell_start_failures_total": 1} {
		if got := value(t, s, name, svcLabel("web")); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := value(t, s, "podcell_requests_total", svcLabel("web", "code_class", "4xx")); got != 1 {
		t.Errorf("4xx requests = %v, want 1", got)
	}
}
