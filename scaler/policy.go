package scaler

import "time"

// The scaling policy is pure: it looks at a snapshot of a service's instances
// and says what to change. The Service applies its decisions; tests drive it
// with a fake clock.

// instState is where an instance is in its life.
type instState int

const (
	stStandby  instState = iota // created, not started: makes the next cold start cheaper
	stStarting                  // started, waiting for its port to answer
	stReady                     // serving
	stPausing                   // being frozen
	stPaused                    // frozen: no CPU, memory kept
	stResuming                  // being thawed
	stDraining                  // takes no new requests, stops when in-flight reaches zero
	stStopping                  // being stopped and removed
)

var stateNames = [...]string{"standby", "starting", "ready", "pausing", "paused", "resuming", "draining", "stopping"}

func (s instState) String() string { return stateNames[s] }

// view is what the policy sees of one instance.
type view struct {
	state      instState
	inflight   int
	lastActive time.Time
	drainSince time.Time
	current    bool // runs the service's current revision
	noPause    bool // pausing it failed before
}

// decision lists instance indexes to act on, and how many to start.
type decision struct {
	pause []int
	drain []int
	stop  []int
	start int
}

// scaleUp says how many paused instances to resume and how many new ones to
// start so that demand (in-flight plus queued requests) fits. serving counts
// instances that are, or soon will be, able to take requests (ready,
// starting, resuming, pausing); total counts every instance that is not
// draining or stopping, which max_instances bounds.
func scaleUp(concurrency, maxInstances, demand, serving, paused, total int) (resume, start int) {
	if demand <= serving*concurrency {
		return 0, 0
	}
	need := (demand+concurrency-1)/concurrency - serving
	resume = min(need, paused)
	need -= resume
	start = max(0, min(need, maxInstances-total))
	return resume, start
}

// decide applies the idle tiers, scale-in after a stable window, revision
// rollover and min_instances. peak is the highest demand seen during the
// stable window; windowFull says the window has seen a whole period.
func decide(now time.Time, cfg ServiceConfig, vs []view, peak int, windowFull bool) decision {
	var d decision
	taken := make([]bool, len(vs))
	take := func(i int) { taken[i] = true }
	pausing := make([]bool, len(vs)) // taken, but still up

	// Draining instances stop when empty or when the drain timeout ends.
	for i, v := range vs {
		if v.state == stDraining && (v.inflight == 0 || now.Sub(v.drainSince) >= cfg.DrainTimeout) {
			d.stop = append(d.stop, i)
			take(i)
		}
	}

	// Old revisions give way as soon as one current instance serves.
	currentReady := false
	for _, v := range vs {
		if v.current && v.state == stReady {
			currentReady = true
		}
	}
	for i, v := range vs {
		if v.current || taken[i] {
			continue
		}
		switch {
		case v.state == stStandby:
			d.stop = append(d.stop, i)
			take(i)
		case currentReady && v.state == stReady:
			d.drain = append(d.drain, i)
			take(i)
		case currentReady && v.state == stPaused:
			d.stop = append(d.stop, i)
			take(i)
		}
	}

	// Count what stays up; min_instances protects the oldest current ones.
	alive := 0
	for i, v := range vs {
		if !taken[i] && v.current && isUp(v.state) {
			alive++
		}
	}

	// Idle tiers, newest first so the oldest instances are the ones kept.
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		if taken[i] || v.inflight > 0 || (v.state != stReady && v.state != stPaused) {
			continue
		}
		idle := now.Sub(v.lastActive)
		if idle >= cfg.IdleTimeout && (!v.current || alive > cfg.MinInstances) {
			d.stop = append(d.stop, i)
			take(i)
			if v.current {
				alive--
			}
			continue
		}
		if v.state == stReady && !v.noPause && cfg.PauseAfter > 0 && idle >= cfg.PauseAfter {
			d.pause = append(d.pause, i)
			take(i)
			pausing[i] = true
		}
	}

	// Scale in once load stayed low for a whole window. Going from one
	// instance to zero is the idle timeout's job, not the window's.
	if windowFull {
		desired := max(cfg.MinInstances, 1, (peak+cfg.Concurrency-1)/cfg.Concurrency)
		ready := 0
		for i, v := range vs {
			if !taken[i] && v.current && v.state == stReady {
				ready++
			}
		}
		for i := len(vs) - 1; i >= 0 && ready > desired; i-- {
			v := vs[i]
			if taken[i] || !v.current || v.state != stReady {
				continue
			}
			d.drain = append(d.drain, i)
			take(i)
			ready--
		}
	}

	// min_instances, and a replacement for old revisions still serving.
	want := cfg.MinInstances
	old := 0
	for i, v := range vs {
		if !v.current && (!taken[i] || pausing[i]) && isUp(v.state) {
			old++
		}
	}
	if old > 0 && !currentReady {
		want = max(want, min(old, cfg.MaxInstances))
	}
	current := 0
	for i, v := range vs {
		if v.current && (!taken[i] || pausing[i]) && isUp(v.state) {
			current++
		}
	}
	if current < want {
		d.start = want - current
	}
	return d
}

// isUp: the instance exists as a running (or frozen) process meant to serve.
func isUp(s instState) bool {
	switch s {
	case stStarting, stReady, stPausing, stPaused, stResuming:
		return true
	}
	return false
}

// window remembers the peak demand of recent ticks for the stable window.
type window struct {
	samples []sample
	first   time.Time
}

type sample struct {
	at   time.Time
	peak int
}

func (w *window) observe(now time.Time, peak int, span time.Duration) {
	if w.first.IsZero() {
		w.first = now
	}
	w.samples = append(w.samples, sample{now, peak})
	cut := 0
	for cut < len(w.samples) && now.Sub(w.samples[cut].at) > span {
		cut++
	}
	w.samples = w.samples[cut:]
}

// max is the peak over the window; full says the window covers span.
func (w *window) max(now time.Time, span time.Duration) (peak int, full bool) {
	for _, s := range w.samples {
		peak = max(peak, s.peak)
	}
	return peak, !w.first.IsZero() && now.Sub(w.first) >= span
}
