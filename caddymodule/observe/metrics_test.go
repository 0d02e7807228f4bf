package observe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
)

// sample is one line of Prometheus' text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape writes m and parses what it wrote, failing on any line that is
// not valid text format.
func scrape(t *testing.T, m *Metrics) []sample {
	t.Helper()
	var b bytes.Buffer
	m.WritePrometheus(&b)
	var out []sample
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			t.Fatalf("scraped line %q: %v", line, err)
		}
		out = append(out, s)
	}
	return out
}

func parseSample(line string) (sample, error) {
	i := strings.LastIndexByte(line, ' ')
	if i < 0 {
		return sample{}, errors.New("no value")
	}
	v, err := strconv.ParseFloat(line[i+1:], 64)
	if err != nil {
		return sample{}, err
	}
	s := sample{value: v, labels: map[string]string{}}
	rest := line[:i]
	name, labels, ok := strings.Cut(rest, "{")
	s.name = name
	if !ok {
		return s, nil
	}
	labels, ok = strings.CutSuffix(labels, "}")
	if !ok {
		return s, errors.New("no closing brace")
	}
	for labels != "" {
		key, after, ok := strings.Cut(labels, `="`)
		if !ok {
			return s, fmt.Errorf("bad label in %q", labels)
		}
		var val strings.Builder
		j := 0
		for ; j < len(after) && after[j] != '"'; j++ {
			if after[j] == '\\' && j+1 < len(after) {
				j++
				if after[j] == 'n' {
					val.WriteByte('\n')
					continue
				}
			}
			val.WriteByte(after[j])
		}
		if j == len(after) {
			return s, fmt.Errorf("unterminated value of %s", key)
		}
		s.labels[key] = val.String()
		labels = strings.TrimPrefix(after[j+1:], ",")
	}
	return s, nil
}

// value finds the sample of name with exactly labels, or fails.
func value(t *testing.T, samples []sample, name string, labels map[string]string) float64 {
	t.Helper()
	for _, s := range samples {
		if s.name == name && maps.Equal(s.labels, labels) {
			return s.value
		}
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

func has(samples []sample, name string, labels map[string]string) bool {
	for _, s := range samples {
		if s.name == name && maps.Equal(s.labels, labels) {
			return true
		}
	}
	return false
}

func svcLabel(name string, kv ...string) map[string]string {
	m := map[string]string{"service": name}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestMetricsRecordAndScrape(t *testing.T) {
	m := NewMetrics()
	m.Request("web", 200, 30*time.Millisecond)
	m.Request("web", 204, 70*time.Millisecond)
	m.Request("web", 503, 2*time.Second)
	m.Request("web", 0, time.Millisecond)
	m.InstanceStarted("web", "abc", 800*time.Millisecond)
	m.InstanceStartFailed("web", "", &scaler.StartError{Service: "web", Reason: "exited"})
	m.InstanceResumed("web", "abc", 4*time.Millisecond)
	m.InstancePaused("web", "abc")
	m.InstanceCrashed("web", "abc", scaler.Crash{ExitCode: 1})
	m.InstanceCrashed("web", "abc", scaler.Crash{ExitCode: 137, OOMKilled: true})
	m.Scaled("web", 0, 2)
	m.Scaled("web", 2, 3)
	m.Scaled("web", 3, 0)
	m.Queued("web", 300*time.Millisecond, scaler.WakeStart, scaler.QueueServed)
	m.Queued("web", 0, scaler.WakeNone, scaler.QueueFull)
	m.Queued("web", 0, scaler.WakeNone, scaler.QueueFull)
	m.Queued("web", 30*time.Second, scaler.WakeNone, scaler.QueueTimeout)
	m.Queued("web", time.Second, scaler.WakeNone, scaler.QueueCanceled)
	m.Build("web", "succeeded", 90*time.Second)
	m.Build("web", "failed", 10*time.Second)
	m.CronRun("web", "nightly", "ok")
	m.CronRun("web", "nightly", "ok")
	m.InstanceStarted("api", "def", 2*time.Second)

	s := scrape(t, m)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"podcell_requests_total", svcLabel("web", "code_class", "2xx"), 2},
		{"podcell_requests_total", svcLabel("web", "code_class", "5xx"), 1},
		{"podcell_requests_total", svcLabel("web", "code_class", "4xx"), 0},
		{"podcell_requests_total", svcLabel("web", "code_class", "other"), 1},
		{"podcell_request_duration_seconds_count", svcLabel("web"), 4},
		{"podcell_request_duration_seconds_bucket", svcLabel("web", "le", "0.05"), 2},
		{"podcell_request_duration_seconds_bucket", svcLabel("web", "le", "0.1"), 3},
		{"podcell_request_duration_seconds_bucket", svcLabel("web", "le", "+Inf"), 4},
		{"podcell_cold_starts_total", svcLabel("web"), 1},
		{"podcell_cold_starts_total", svcLabel("api"), 1},
		{"podcell_cold_start_duration_seconds_sum", svcLabel("web"), 0.8},
		{"podcell_cold_start_duration_seconds_bucket", svcLabel("web", "le", "0.75"), 0},
		{"podcell_cold_start_duration_seconds_bucket", svcLabel("web", "le", "1"), 1},
		{"podcell_start_failures_total", svcLabel("web"), 1},
		{"podcell_resumes_total", svcLabel("web"), 1},
		{"podcell_resume_duration_seconds_bucket", svcLabel("web", "le", "0.005"), 1},
		{"podcell_pauses_total", svcLabel("web"), 1},
		{"podcell_instance_crashes_total", svcLabel("web"), 2},
		{"podcell_oom_kills_total", svcLabel("web"), 1},
		{"podcell_scale_events_total", svcLabel("web", "direction", "up"), 2},
		{"podcell_scale_events_total", svcLabel("web", "direction", "down"), 1},
		{"podcell_queue_wait_seconds_count", svcLabel("web"), 1},
		{"podcell_queue_wait_seconds_sum", svcLabel("web"), 0.3},
		{"podcell_queue_rejections_total", svcLabel("web", "reason", "full"), 2},
		{"podcell_queue_rejections_total", svcLabel("web", "reason", "timeout"), 1},
		{"podcell_builds_total", svcLabel("web", "result", "succeeded"), 1},
		{"podcell_builds_total", svcLabel("web", "result", "failed"), 1},
		{"podcell_build_duration_seconds_count", svcLabel("web"), 2},
		{"podcell_build_duration_seconds_bucket", svcLabel("web", "le", "60"), 1},
		{"podcell_cron_runs_total", svcLabel("web", "job", "nightly", "status", "ok"), 2},
	}
	for _, c := range checks {
		if got := value(t, s, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// Labels name services, jobs and small fixed sets only.
	allowed := map[string]bool{"service": true, "code_class": true, "le": true, "direction": true,
		"reason": true, "result": true, "job": true, "status": true, "state": true}
	for _, smp := range s {
		if !strings.HasPrefix(smp.name, "podcell_") {
			t.Errorf("metric %s lacks the podcell_ prefix", smp.name)
		}
		for k := range smp.labels {
			if !allowed[k] {
				t.Errorf("metric %s has label %q", smp.name, k)
			}
		}
		if smp.labels["service"] == "" {
			t.Errorf("metric %s%v has no service", smp.name, smp.labels)
		}
	}
}

// Scraping a running scaler's state: instances by state (zeros included)
// and the queue, for the services the source returns now.
func TestMetricsGaugesFromSnapshots(t *testing.T) {
	m := NewMetrics()
	snaps := []scaler.Snapshot{{
		Name: "web", Queued: 7, Inflight: 3,
		Instances: []scaler.InstanceSnapshot{{State: "ready"}, {State: "ready"}, {State: "paused"}, {State: "standby"}},
	}, {Name: "api", Instances: []scaler.InstanceSnapshot{{State: "ready"}}}}
	m.Watch(func() []scaler.Snapshot { return slices.Clone(snaps) })
	s := scrape(t, m)
	// The text format wants each family's lines together.
	seen := map[string]bool{}
	prev := ""
	for _, smp := range scrape(t, m) {
		family := smp.name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			family = strings.TrimSuffix(family, suffix)
		}
		if family != prev && seen[family] {
			t.Errorf("the lines of %s are not together", family)
		}
		seen[family], prev = true, family
	}
	if got := value(t, s, "podcell_instances", svcLabel("api", "state", "ready")); got != 1 {
		t.Errorf("api's ready instances = %v, want 1", got)
	}
	for state, want := range map[string]float64{"ready": 2, "paused": 1, "standby": 1, "starting": 0, "draining": 0} {
		if got := value(t, s, "podcell_instances", svcLabel("web", "state", state)); got != want {
			t.Errorf("instances in %s = %v, want %v", state, got, want)
		}
	}
	if got := value(t, s, "podcell_queue_depth", svcLabel("web")); got != 7 {
		t.Errorf("queue depth = %v, want 7", got)
	}
	if got := value(t, s, "podcell_inflight_requests", svcLabel("web")); got != 3 {
		t.Errorf("in flight = %v, want 3", got)
	}
	for _, st := range scaler.InstanceStates() {
		if !has(s, "podcell_instances", svcLabel("web", "state", st)) {
			t.Errorf("no gauge of state %s", st)
		}
	}

	// Counters are made at a service's first event, not by the gauges: a
	// service never used costs no series.
	if has(s, "podcell_cold_starts_total", svcLabel("web")) || has(s, "podcell_requests_total", svcLabel("web", "code_class", "2xx")) {
		t.Error("counters of a service that had no event are written")
	}
	m.InstanceStarted("web", "abc", time.Second)

	// A removed service's gauges go with it; its counters stay.
	snaps = nil
	s = scrape(t, m)
	if has(s, "podcell_queue_depth", svcLabel("web")) || has(s, "podcell_instances", svcLabel("web", "state", "ready")) {
		t.Error("gauges of a removed service are still written")
	}
	if !has(s, "podcell_cold_starts_total", svcLabel("web")) {
		t.Error("the counters of a service that started an instance are not written")
	}
}

// A config reload declares the same services again, and a new scaler
// (Podman address changed) gets a new Metrics: neither may panic on
// duplicate names or lose counts.
func TestMetricsReload(t *testing.T) {
	m := NewMetrics()
	m.InstanceStarted("web", "a", time.Second)
	m.Build("web", "succeeded", time.Minute)
	m.CronRun("web", "j", "ok")
	m.Watch(func() []scaler.Snapshot { return []scaler.Snapshot{{Name: "web"}} })
	m.Watch(func() []scaler.Snapshot { return []scaler.Snapshot{{Name: "web"}, {Name: "api"}} })
	m.InstanceStarted("web", "b", time.Second)
	m.Build("web", "succeeded", time.Minute)
	m.CronRun("web", "j", "ok")
	s := scrape(t, m)
	if got := value(t, s, "podcell_cold_starts_total", svcLabel("web")); got != 2 {
		t.Errorf("cold starts = %v after a second declaration, want 2", got)
	}
	if got := value(t, s, "podcell_builds_total", svcLabel("web", "result", "succeeded")); got != 2 {
		t.Errorf("builds = %v, want 2", got)
	}
	if got := value(t, s, "podcell_cron_runs_total", svcLabel("web", "job", "j", "status", "ok")); got != 2 {
		t.Errorf("cron runs = %v, want 2", got)
	}
	names := map[string]int{}
	for _, smp := range s {
		names[smp.name+fmt.Sprint(smp.labels)]++
	}
	for k, n := range names {
		if n > 1 {
			t.Errorf("series %s written %d times", k, n)
		}
	}
	if !has(s, "podcell_queue_depth", svcLabel("api")) {
		t.Error("the second Watch's source is not used")
	}

	other := NewMetrics()
	other.InstanceStarted("web", "c", time.Second)
	if got := value(t, scrape(t, other), "podcell_cold_starts_total", svcLabel("web")); got != 1 {
		t.Errorf("a second Metrics counts %v cold starts, want its own 1", got)
	}
}

func TestMetricsLabelEscaping(t *testing.T) {
	m := NewMetrics()
	job := "say \"hi\"\\now\nplease"
	m.CronRun("web", job, "ok")
	if got := value(t, scrape(t, m), "podcell_cron_runs_total", svcLabel("web", "job", job, "status", "ok")); got != 1 {
		t.Errorf("cron runs of an oddly named job = %v, want 1", got)
	}
}

// Request is on every request's path: once a service is known, it must
// not allocate.
func TestMetricsRequestAllocatesNothing(t *testing.T) {
	m := NewMetrics()
	m.Request("web", 200, time.Millisecond)
	allocs := testing.AllocsPerRun(1000, func() {
		m.Request("web", 200, time.Millisecond)
	})
	if allocs != 0 {
		t.Errorf("Request allocates %.1f times, want 0", allocs)
	}
}

func TestRequestsDoneAllocatesNothing(t *testing.T) {
	h := NewHub(nil)
	defer h.Close()
	r := h.Requests("web")
	// Declared, never answered: no series yet.
	var b strings.Builder
	h.Metrics.WritePrometheus(&b)
	if strings.Contains(b.String(), `service="web"`) {
		t.Errorf("a service that never answered has series:\n%s", b.String())
	}
	r.Done(200, time.Millisecond, "") // the first answer makes them
	allocs := testing.AllocsPerRun(1000, func() {
		r.Done(200, time.Millisecond, "")
	})
	if allocs != 0 {
		t.Errorf("Requests.Done allocates %.1f times, want 0", allocs)
	}
	if got := h.Metrics.service("web").requests[2].Get(); got < 1000 {
		t.Errorf("2xx counter %d after 1000 answers", got)
	}
}
