package observe

import (
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/podcell/podcell/scaler"
)

// Metrics are podcell's Prometheus metrics. Labels name services (and cron
// jobs) only, never requests or instances, so the number of series stays
// bounded by the config.
//
// Each Metrics has its own metrics.Set and creates every series with
// GetOrCreate, so declaring a service again (a config reload) finds the
// series it had instead of panicking on a duplicate. A service's counters
// and histograms are made at its first event (a response, a start...), not
// when it is declared: a thousand services never used cost no series.
// Gauges of instance
// states are not registered at all: they are written from the scaler's
// snapshots at each scrape, so a removed service's gauges simply go.
type Metrics struct {
	set *metrics.Set

	mu        sync.RWMutex
	services  map[string]*serviceMetrics
	snapshots func() []scaler.Snapshot
}

// serviceMetrics are one service's series, made once so the request path
// only looks them up.
type serviceMetrics struct {
	requests          [len(codeClasses)]*metrics.Counter
	requestDuration   *metrics.PrometheusHistogram
	coldStarts        *metrics.Counter
	coldStartDuration *metrics.PrometheusHistogram
	startFailures     *metrics.Counter
	resumes           *metrics.Counter
	resumeDuration    *metrics.PrometheusHistogram
	pauses            *metrics.Counter
	queueWait         *metrics.PrometheusHistogram
	queueFull         *metrics.Counter
	queueTimeout      *metrics.Counter
	scaleUp           *metrics.Counter
	scaleDown         *metrics.Counter
	crashes           *metrics.Counter
	oomKills          *metrics.Counter
}

// codeClasses label responses by status class; index code/100, with
// anything out of range as "other".
var codeClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// Buckets, in seconds, around what each duration usually is: requests from
// milliseconds to a minute, cold starts from a tenth of a second, resumes
// (a cgroup thaw) from a millisecond, builds in minutes.
var (
	requestBuckets   = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	coldStartBuckets = []float64{.1, .25, .5, .75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60}
	resumeBuckets    = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	queueBuckets     = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	buildBuckets     = []float64{5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}
)

// NewMetrics returns metrics in a set of their own.
func NewMetrics() *Metrics {
	m := &Metrics{set: metrics.NewSet(), services: map[string]*serviceMetrics{}}
	m.set.RegisterMetricsWriter(m.writeGauges)
	return m
}

// Watch makes the gauges report the services that snapshots returns; a
// later call replaces the source.
func (m *Metrics) Watch(snapshots func() []scaler.Snapshot) {
	m.mu.Lock()
	m.snapshots = snapshots
	m.mu.Unlock()
}

// WritePrometheus writes every metric in Prometheus' text format.
func (m *Metrics) WritePrometheus(w io.Writer) {
	m.set.WritePrometheus(w)
}

// service returns the series of a service, making them on first use.
func (m *Metrics) service(name string) *serviceMetrics {
	m.mu.RLock()
	sm := m.services[name]
	m.mu.RUnlock()
	if sm != nil {
		return sm
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if sm := m.services[name]; sm != nil {
		return sm
	}
	s := serviceLabel(name)
	counter := func(name string, labels ...string) *metrics.Counter {
		return m.set.GetOrCreateCounter(series(name, append([]string{s}, labels...)...))
	}
	histogram := func(name string, buckets []float64) *metrics.PrometheusHistogram {
		return m.set.GetOrCreatePrometheusHistogramExt(series(name, s), buckets)
	}
	sm = &serviceMetrics{
		requestDuration:   histogram("podcell_request_duration_seconds", requestBuckets),
		coldStarts:        counter("podcell_cold_starts_total"),
		coldStartDuration: histogram("podcell_cold_start_duration_seconds", coldStartBuckets),
		startFailures:     counter("podcell_start_failures_total"),
		resumes:           counter("podcell_resumes_total"),
		resumeDuration:    histogram("podcell_resume_duration_seconds", resumeBuckets),
		pauses:            counter("podcell_pauses_total"),
		queueWait:         histogram("podcell_queue_wait_seconds", queueBuckets),
		queueFull:         counter("podcell_queue_rejections_total", `reason="full"`),
		queueTimeout:      counter("podcell_queue_rejections_total", `reason="timeout"`),
		scaleUp:           counter("podcell_scale_events_total", `direction="up"`),
		scaleDown:         counter("podcell_scale_events_total", `direction="down"`),
		crashes:           counter("podcell_instance_crashes_total"),
		oomKills:          counter("podcell_oom_kills_total"),
	}
	for i, class := range codeClasses {
		sm.requests[i] = counter("podcell_requests_total", `code_class="`+class+`"`)
	}
	m.services[name] = sm
	return sm
}

// Request records a response of a service. It allocates nothing once the
// service has been seen.
func (m *Metrics) Request(service string, code int, took time.Duration) {
	m.service(service).request(code, took)
}

func (sm *serviceMetrics) request(code int, took time.Duration) {
	class := code / 100
	if class < 1 || class >= len(codeClasses) {
		class = 0
	}
	sm.requests[class].Inc()
	sm.requestDuration.Update(took.Seconds())
}

// Build records a finished image build; result is "succeeded" or "failed".
func (m *Metrics) Build(service, result string, took time.Duration) {
	s := serviceLabel(service)
	m.set.GetOrCreateCounter(series("podcell_builds_total", s, `result="`+labelValue(result)+`"`)).Inc()
	m.set.GetOrCreatePrometheusHistogramExt(series("podcell_build_duration_seconds", s), buildBuckets).Update(took.Seconds())
}

// CronRun records a run of a service's cron job. status must come from a
// small fixed set ("ok", "failed", "skipped"...), not from the response.
func (m *Metrics) CronRun(service, job, status string) {
	m.set.GetOrCreateCounter(series("podcell_cron_runs_total", serviceLabel(service),
		`job="`+labelValue(job)+`"`, `status="`+labelValue(status)+`"`)).Inc()
}

func (m *Metrics) InstanceStarted(service, id string, took time.Duration) {
	sm := m.service(service)
	sm.coldStarts.Inc()
	sm.coldStartDuration.Update(took.Seconds())
}

func (m *Metrics) InstanceStartFailed(service, id string, err *scaler.StartError) {
	m.service(service).startFailures.Inc()
}

func (m *Metrics) InstanceResumed(service, id string, took time.Duration) {
	sm := m.service(service)
	sm.resumes.Inc()
	sm.resumeDuration.Update(took.Seconds())
}

func (m *Metrics) InstancePaused(service, id string) {
	m.service(service).pauses.Inc()
}

func (m *Metrics) InstanceCrashed(service, id string, c scaler.Crash) {
	sm := m.service(service)
	sm.crashes.Inc()
	if c.OOMKilled {
		sm.oomKills.Inc()
	}
}

func (m *Metrics) InstanceRemoved(service, id string) {}

func (m *Metrics) Scaled(service string, from, to int) {
	sm := m.service(service)
	if to > from {
		sm.scaleUp.Inc()
	} else {
		sm.scaleDown.Inc()
	}
}

func (m *Metrics) Queued(service string, waited time.Duration, wake scaler.Wake, outcome scaler.QueueOutcome) {
	sm := m.service(service)
	switch outcome {
	case scaler.QueueServed:
		sm.queueWait.Update(waited.Seconds())
	case scaler.QueueFull:
		sm.queueFull.Inc()
	case scaler.QueueTimeout:
		sm.queueTimeout.Inc()
	}
}

// writeGauges writes the gauges read from the scaler at scrape time: every
// state of every live service, zeros included, so a series does not vanish
// when its last instance leaves the state. Each family is written as one
// group, as the text format wants.
func (m *Metrics) writeGauges(w io.Writer) {
	m.mu.RLock()
	snapshots := m.snapshots
	m.mu.RUnlock()
	if snapshots == nil {
		return
	}
	snaps := snapshots()
	slices.SortFunc(snaps, func(a, b scaler.Snapshot) int { return strings.Compare(a.Name, b.Name) })
	for _, snap := range snaps {
		metrics.WriteGaugeUint64(w, series("podcell_inflight_requests", serviceLabel(snap.Name)), uint64(snap.Inflight))
	}
	for _, snap := range snaps {
		for _, st := range scaler.InstanceStates() {
			metrics.WriteGaugeUint64(w, series("podcell_instances", serviceLabel(snap.Name), `state="`+st+`"`), uint64(snap.Count(st)))
		}
	}
	for _, snap := range snaps {
		metrics.WriteGaugeUint64(w, series("podcell_queue_depth", serviceLabel(snap.Name)), uint64(snap.Queued))
	}
}

func serviceLabel(name string) string {
	return `service="` + labelValue(name) + `"`
}

// series is name{labels...}; each label is already `key="value"`.
func series(name string, labels ...string) string {
	return name + "{" + strings.Join(labels, ",") + "}"
}

// labelValue escapes a label value as Prometheus' text format wants.
func labelValue(v string) string {
	return labelEscaper.Replace(v)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// InstanceStarting and InstanceSlow count nothing: a start is counted when
// it ends (InstanceStarted, InstanceStartFailed).
func (m *Metrics) InstanceStarting(service, id string)   {}
func (m *Metrics) InstanceSlow(service, id, hint string) {}

var _ scaler.Observer = (*Metrics)(nil)
