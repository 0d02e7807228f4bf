package scaler

import (
	"reflect"
	"testing"
	"time"
)

// policyNow is the fake clock of the policy tests.
var policyNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// policyCfg: pause after 10s, stop after 5m, 60s window, 30s drain,
// 10 requests per instance, at most 10 instances.
func policyCfg(mod func(*ServiceConfig)) ServiceConfig {
	c := ServiceConfig{
		Name: "svc", Image: "img",
		PauseAfter: 10 * time.Second, IdleTimeout: 5 * time.Minute, StableWindow: time.Minute,
		DrainTimeout: 30 * time.Second, Concurrency: 10, MaxInstances: 10,
	}
	if mod != nil {
		mod(&c)
	}
	return c.WithDefaults()
}

// cur and old build views of current- and old-revision instances idle for
// the given time; busy sets in-flight requests.
func cur(st instState, idle time.Duration) view {
	return view{state: st, lastActive: policyNow.Add(-idle), current: true}
}

func old(st instState, idle time.Duration) view {
	v := cur(st, idle)
	v.current = false
	return v
}

func busy(v view, n int) view { v.inflight = n; return v }

func draining(v view, since time.Duration, inflight int) view {
	v.state = stDraining
	v.drainSince = policyNow.Add(-since)
	v.inflight = inflight
	return v
}

func ints(is ...int) []int { return is }

// sameDecision compares decisions treating nil and empty lists alike.
func sameDecision(a, b decision) bool {
	norm := func(s []int) []int {
		if len(s) == 0 {
			return nil
		}
		return s
	}
	a.pause, a.drain, a.stop = norm(a.pause), norm(a.drain), norm(a.stop)
	b.pause, b.drain, b.stop = norm(b.pause), norm(b.drain), norm(b.stop)
	return reflect.DeepEqual(a, b)
}

type decideCase struct {
	name string
	cfg  ServiceConfig
	vs   []view
	peak int
	full bool
	want decision
}

func runDecide(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(policyNow, tc.cfg, tc.vs, tc.peak, tc.full)
			if !sameDecision(got, tc.want) {
				t.Errorf("decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecideIdleTiers(t *testing.T) {
	const s, m = time.Second, time.Minute
	runDecide(t, []decideCase{
		{name: "no instances", cfg: policyCfg(nil)},
		{name: "recently active ready kept", cfg: policyCfg(nil),
			vs: []view{cur(stReady, 9*s)}},
		{name: "busy instance never idles", cfg: policyCfg(nil),
			vs: []view{busy(cur(stReady, time.Hour), 1)}},
		{name: "pause at pause_after", cfg: policyCfg(nil),
			vs:   []view{cur(stReady, 10*s)},
			want: decision{pause: ints(0)}},
		{name: "pausing disabled", cfg: policyCfg(func(c *ServiceConfig) { c.PauseAfter = -1 }),
			vs: []view{cur(stReady, 4*m)}},
		{name: "paused kept before idle_timeout", cfg: policyCfg(nil),
			vs: []view{cur(stPaused, 5*m-s)}},
		{name: "paused stopped at idle_timeout", cfg: policyCfg(nil),
			vs:   []view{cur(stPaused, 5*m)},
			want: decision{stop: ints(0)}},
		{name: "ready stopped at idle_timeout", cfg: policyCfg(nil),
			vs:   []view{cur(stReady, 6*m)},
			want: decision{stop: ints(0)}},
		{name: "idle ready stopped without pausing when pausing is disabled", cfg: policyCfg(func(c *ServiceConfig) { c.PauseAfter = -1 }),
			vs:   []view{cur(stReady, 5*m)},
			want: decision{stop: ints(0)}},
		{name: "only idle ones pause", cfg: policyCfg(nil),
			vs:   []view{cur(stReady, s), cur(stReady, 20*s), busy(cur(stReady, 20*s), 2)},
			want: decision{pause: ints(1)}},
		{name: "starting, pausing and resuming are left alone", cfg: policyCfg(nil),
			vs: []view{cur(stStarting, time.Hour), cur(stPausing, time.Hour), cur(stResuming, time.Hour)}},
		{name: "min_instances keeps the oldest", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 1 }),
			vs:   []view{cur(stPaused, 6*m), cur(stPaused, 6*m), cur(stPaused, 6*m)},
			want: decision{stop: ints(2, 1)}},
		{name: "min_instances 2 keeps the two oldest", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 2 }),
			vs:   []view{cur(stPaused, 6*m), cur(stPaused, 6*m), cur(stPaused, 6*m)},
			want: decision{stop: ints(2)}},
		{name: "min_instances counts starting instances", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 1 }),
			vs:   []view{cur(stPaused, 6*m), cur(stStarting, 0)},
			want: decision{stop: ints(0)}},
		{name: "min_instances keeps an idle instance", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 1; c.PauseAfter = -1 }),
			vs: []view{cur(stReady, time.Hour)}},
		{name: "old revision idle stopped regardless of min_instances", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 1 }),
			vs:   []view{old(stPaused, 6*m), cur(stPaused, 6*m)},
			want: decision{stop: ints(0)}},
	})
}

func TestDecideStableWindow(t *testing.T) {
	recent := time.Second
	three := []view{cur(stReady, recent), cur(stReady, recent), cur(stReady, recent)}
	runDecide(t, []decideCase{
		{name: "no scale-in before the window is full", cfg: policyCfg(nil),
			vs: three, peak: 0, full: false},
		{name: "low load drains newest first down to one", cfg: policyCfg(nil),
			vs: three, peak: 0, full: true,
			want: decision{drain: ints(2, 1)}},
		{name: "peak 15 at concurrency 10 keeps two", cfg: policyCfg(nil),
			vs: three, peak: 15, full: true,
			want: decision{drain: ints(2)}},
		{name: "peak 21 keeps three", cfg: policyCfg(nil),
			vs: three, peak: 21, full: true},
		{name: "min_instances keeps three", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 3 }),
			vs: three, peak: 0, full: true},
		{name: "the window never goes below one", cfg: policyCfg(nil),
			vs: []view{cur(stReady, recent)}, peak: 0, full: true},
		{name: "busy newest is drained too (it stops when empty)", cfg: policyCfg(nil),
			vs: []view{cur(stReady, recent), busy(cur(stReady, recent), 3)}, peak: 3, full: true,
			want: decision{drain: ints(1)}},
		{name: "only ready instances are drained", cfg: policyCfg(nil),
			vs: []view{cur(stReady, recent), cur(stReady, recent), cur(stStarting, 0)}, peak: 0, full: true,
			want: decision{drain: ints(1)}},
		{name: "paused instances do not count as ready", cfg: policyCfg(nil),
			vs: []view{cur(stPaused, time.Minute), cur(stReady, recent)}, peak: 0, full: true},
	})
}

func TestDecideDraining(t *testing.T) {
	s := time.Second
	runDecide(t, []decideCase{
		{name: "empty draining instance stops", cfg: policyCfg(nil),
			vs:   []view{cur(stReady, s), draining(cur(stReady, s), s, 0)},
			want: decision{stop: ints(1)}},
		{name: "busy draining instance waits", cfg: policyCfg(nil),
			vs: []view{cur(stReady, s), draining(cur(stReady, s), 29*s, 2)}},
		{name: "drain timeout stops a busy one", cfg: policyCfg(nil),
			vs:   []view{cur(stReady, s), draining(cur(stReady, s), 30*s, 2)},
			want: decision{stop: ints(1)}},
		{name: "draining instances do not count for min_instances", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 1 }),
			vs:   []view{draining(cur(stReady, s), s, 1)},
			want: decision{start: 1}},
	})
}

func TestDecideRevisionRollover(t *testing.T) {
	s := time.Second
	runDecide(t, []decideCase{
		{name: "old ready kept while the current one starts", cfg: policyCfg(nil),
			vs: []view{old(stReady, s), cur(stStarting, 0)}},
		{name: "old ready drained once a current one is ready", cfg: policyCfg(nil),
			vs:   []view{old(stReady, s), cur(stReady, s)},
			want: decision{drain: ints(0)}},
		{name: "busy old ready drained too", cfg: policyCfg(nil),
			vs:   []view{busy(old(stReady, s), 4), old(stReady, s), cur(stReady, s)},
			want: decision{drain: ints(0, 1)}},
		{name: "old paused stopped once a current one is ready", cfg: policyCfg(nil),
			vs:   []view{old(stPaused, time.Minute), cur(stReady, s)},
			want: decision{stop: ints(0)}},
		{name: "old paused kept while no current one is ready", cfg: policyCfg(nil),
			vs: []view{old(stPaused, time.Minute), cur(stStarting, 0)}},
		{name: "old standby stopped at once", cfg: policyCfg(nil),
			vs:   []view{old(stStandby, 0)},
			want: decision{stop: ints(0)}},
		{name: "current standby kept", cfg: policyCfg(nil),
			vs: []view{cur(stStandby, time.Hour)}},
		{name: "replacements started for old serving instances", cfg: policyCfg(nil),
			vs:   []view{old(stReady, s), busy(old(stReady, s), 2)},
			want: decision{start: 2}},
		{name: "replacements count current starting ones", cfg: policyCfg(nil),
			vs:   []view{old(stReady, s), old(stReady, s), cur(stStarting, 0)},
			want: decision{start: 1}},
		{name: "replacements capped by max_instances", cfg: policyCfg(func(c *ServiceConfig) { c.MaxInstances = 2 }),
			vs:   []view{old(stReady, s), old(stReady, s), old(stReady, s)},
			want: decision{start: 2}},
		{name: "no replacement for an old instance that idled out", cfg: policyCfg(nil),
			vs:   []view{old(stReady, 6*time.Minute)},
			want: decision{stop: ints(0)}},
		{name: "no replacement once a current one is ready", cfg: policyCfg(nil),
			vs:   []view{busy(old(stReady, s), 5), cur(stReady, s)},
			want: decision{drain: ints(0)}},
	})
}

func TestDecideMinInstances(t *testing.T) {
	runDecide(t, []decideCase{
		{name: "start min_instances from zero", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 2 }),
			want: decision{start: 2}},
		{name: "standby does not count", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 1 }),
			vs:   []view{cur(stStandby, 0)},
			want: decision{start: 1}},
		{name: "starting counts", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 2 }),
			vs:   []view{cur(stStarting, 0)},
			want: decision{start: 1}},
		{name: "paused counts", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 2 }),
			vs: []view{cur(stPaused, time.Minute), cur(stPaused, time.Minute)}},
		{name: "stopping does not count", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 1 }),
			vs:   []view{cur(stStopping, 0)},
			want: decision{start: 1}},
		{name: "min_instances 0 starts nothing", cfg: policyCfg(nil)},
	})
}

// An instance paused by this very decision is still up: min_instances must
// not start another one for it (an already-paused instance counts, see
// "paused counts" above).
func TestDecidePausingInstanceCountsForMinInstances(t *testing.T) {
	runDecide(t, []decideCase{
		{name: "sole min instance paused, not replaced", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 1 }),
			vs:   []view{cur(stReady, 15*time.Second)},
			want: decision{pause: ints(0)}},
		{name: "two min instances paused, not replaced", cfg: policyCfg(func(c *ServiceConfig) { c.MinInstances = 2 }),
			vs:   []view{cur(stReady, 15*time.Second), cur(stReady, 15*time.Second)},
			want: decision{pause: ints(1, 0)}},
		{name: "old instance paused still gets one replacement", cfg: policyCfg(nil),
			vs:   []view{old(stReady, 15*time.Second)},
			want: decision{pause: ints(0), start: 1}},
	})
}

func TestScaleUp(t *testing.T) {
	cases := []struct {
		name                                                      string
		concurrency, maxInstances, demand, serving, paused, total int
		resume, start                                             int
	}{
		{"no demand", 80, 10, 0, 0, 0, 0, 0, 0},
		{"first request from zero", 80, 10, 1, 0, 0, 0, 0, 1},
		{"fits exactly", 80, 10, 80, 1, 0, 1, 0, 0},
		{"one over", 80, 10, 81, 1, 0, 1, 0, 1},
		{"ceil of demand", 10, 10, 25, 0, 0, 0, 0, 3},
		{"starting instances count as serving", 10, 10, 25, 3, 0, 3, 0, 0},
		{"resume paused before starting", 10, 10, 25, 0, 2, 2, 2, 1},
		{"resume only what is needed", 10, 10, 15, 0, 5, 5, 2, 0},
		{"capped by max_instances", 10, 3, 1000, 1, 0, 1, 0, 2},
		{"paused count against max_instances", 10, 3, 1000, 2, 1, 3, 1, 0},
		{"never negative above a lowered max", 1, 3, 10, 5, 0, 5, 0, 0},
		{"concurrency 1", 1, 10, 4, 1, 0, 1, 0, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resume, start := scaleUp(tc.concurrency, tc.maxInstances, tc.demand, tc.serving, tc.paused, tc.total)
			if resume != tc.resume || start != tc.start {
				t.Errorf("scaleUp(conc %d, max %d, demand %d, serving %d, paused %d, total %d) = resume %d, start %d; want %d, %d",
					tc.concurrency, tc.maxInstances, tc.demand, tc.serving, tc.paused, tc.total, resume, start, tc.resume, tc.start)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	span := time.Minute
	at := func(d time.Duration) time.Time { return policyNow.Add(d) }
	type obs struct {
		at   time.Duration
		peak int
	}
	cases := []struct {
		name     string
		observed []obs
		now      time.Duration
		peak     int
		full     bool
	}{
		{"empty", nil, 0, 0, false},
		{"one sample", []obs{{0, 5}}, 0, 5, false},
		{"not full just before span", []obs{{0, 5}, {59 * time.Second, 1}}, 59 * time.Second, 5, false},
		{"full at span, sample at span age kept", []obs{{0, 5}, {time.Minute, 1}}, time.Minute, 5, true},
		{"old peak forgotten", []obs{{0, 9}, {30 * time.Second, 2}, {61 * time.Second, 1}}, 61 * time.Second, 2, true},
		{"stays full once full", []obs{{0, 9}, {5 * time.Minute, 0}}, 5 * time.Minute, 0, true},
		{"highest of the window", []obs{{0, 1}, {10 * time.Second, 7}, {20 * time.Second, 3}}, 20 * time.Second, 7, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var w window
			for _, o := range tc.observed {
				w.observe(at(o.at), o.peak, span)
			}
			peak, full := w.max(at(tc.now), span)
			if peak != tc.peak || full != tc.full {
				t.Errorf("max = %d, %v; want %d, %v", peak, full, tc.peak, tc.full)
			}
		})
	}
}
