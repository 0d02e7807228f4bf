package cron

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Clock tells the scheduler the time; tests give it a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Store persists run history so a restart knows when each job last ran.
// SaveRun is called once per finished, skipped or missed run, sometimes
// from the scheduler's loop, so it should be quick; LoadRuns when Set
// first sees a job.
type Store interface {
	SaveRun(Run) error
	LoadRuns(service, job string) ([]Run, error)
}

// Status is how a run ended.
type Status string

const (
	StatusSucceeded Status = "succeeded" // a 2xx answer
	StatusFailed    Status = "failed"    // any other answer or error, after the retries
	StatusSkipped   Status = "skipped"   // overlap skip: the previous run was still running
	StatusMissed    Status = "missed"    // fire times that passed while podcell was not running
	StatusCancelled Status = "cancelled" // replaced by a newer run (overlap replace) or Close
)

// Run is one run of a job, or one tick that did not run.
type Run struct {
	Job        string        `json:"job"`
	Service    string        `json:"service"`
	Scheduled  time.Time     `json:"scheduled"` // the fire time; for a manual run, when it was triggered
	Started    time.Time     `json:"started"`
	Duration   time.Duration `json:"duration"`
	Status     Status        `json:"status"`
	StatusCode int           `json:"status_code,omitempty"` // of the last attempt
	Attempts   int           `json:"attempts,omitempty"`
	Error      string        `json:"error,omitempty"`
	Manual     bool          `json:"manual,omitempty"`
}

// Headers on every request.
const (
	HeaderJob       = "Podcell-Cron"           // the job's name
	HeaderScheduled = "Podcell-Cron-Scheduled" // the fire time, RFC 3339 in the job's zone
	HeaderAttempt   = "Podcell-Cron-Attempt"   // 1, 2, ... within one run
	HeaderSecret    = "Podcell-Cron-Secret"    // Options.Secret(service), when not empty
	UserAgent       = "podcell-cron"
)

// Options configure a Scheduler. Service is required.
type Options struct {
	// Service finds the way in to a service, which sends the job's
	// requests to it (podcell: the service's gateway); nil if there is
	// none, and the run fails saying so.
	Service func(name string) Doer
	// Secret returns a service's cron secret, sent as Podcell-Cron-Secret
	// so the service can tell scheduled calls from outside traffic.
	Secret func(service string) string
	Store  Store     // optional: history survives restarts
	OnRun  func(Run) // optional: called after each run is recorded (metrics)
	Clock  Clock     // default: the real clock
	Logger *zap.Logger
	// RetryWaitMin and RetryWaitMax bound the exponential backoff between
	// attempts (default 1s and 30s). A Retry-After on 429 or 503 wins.
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration
	// HistorySize is how many runs per job are kept in memory (default 50).
	HistorySize int
}

// Doer sends one request to a service and returns its answer. The
// request's URL is the job's path and query; its Host is the service.
type Doer interface {
	Do(ctx context.Context, req *http.Request) (*http.Response, error)
}

// ErrClosed is returned by a Scheduler after Close.
var ErrClosed = errors.New("cron: scheduler is closed")

// maxSleep caps one wait of the loop so a wall-clock jump or a suspend
// (timers do not count suspended time) is noticed within a minute.
const maxSleep = time.Minute

// Scheduler fires jobs. It is meant to live as long as the process, across
// config reloads; see the package documentation.
type Scheduler struct {
	opts   Options
	log    *zap.Logger
	ctx    context.Context // cancelled by Close, and with it every run
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{} // closed when the loop returns
	runs   sync.WaitGroup
	setMu  sync.Mutex // serializes Set, which loads history outside mu

	mu     sync.Mutex
	jobs   map[jobKey]*entry
	closed bool

	// passes counts the loop's passes (started under mu, and done
	// including persistence), so tests can wait for a pass that saw the
	// time they set.
	passes     uint64
	passesDone atomic.Uint64
}

type jobKey struct{ service, name string }

type entry struct {
	job     Job
	sched   schedule
	next    time.Time // zero: never again
	running map[*run]struct{}
	history []Run
	// removed by Set while runs were still in progress; the entry goes
	// when the last one finishes, so a re-added job still sees them.
	removed bool
}

type run struct {
	job      Job
	loc      *time.Location
	rec      Run
	cancel   context.CancelFunc
	replaced bool // cancelled by overlap replace; guarded by Scheduler.mu
}

// New starts a scheduler with no jobs.
func New(opts Options) (*Scheduler, error) {
	if opts.Service == nil {
		return nil, fmt.Errorf("cron: Options.Service is required")
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.RetryWaitMin <= 0 {
		opts.RetryWaitMin = time.Second
	}
	if opts.RetryWaitMax < opts.RetryWaitMin {
		opts.RetryWaitMax = max(30*time.Second, opts.RetryWaitMin)
	}
	if opts.HistorySize <= 0 {
		opts.HistorySize = 50
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{
		opts:   opts,
		log:    log,
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		jobs:   map[jobKey]*entry{},
	}
	go s.loop()
	return s, nil
}

// Set replaces the job set. It validates every job first and changes
// nothing if one is invalid or two share a service and name.
//
// A job whose definition is unchanged keeps its next fire time and its
// runs in progress. A changed job is rescheduled from now; a run of its
// old definition finishes, and counts for overlap. A removed job fires no
// more; a run of it in progress finishes (bounded by its timeout) and is
// recorded. A job new to this scheduler continues after the latest
// scheduled run in the Store's history (see the package doc on missed
// runs), or from now without history.
func (s *Scheduler) Set(jobs []Job) error {
	type parsed struct {
		job   Job
		sched schedule
	}
	want := map[jobKey]parsed{}
	for _, j := range jobs {
		j = j.WithDefaults()
		sched, err := j.parse()
		if err != nil {
			return err
		}
		k := jobKey{j.Service, j.Name}
		if _, dup := want[k]; dup {
			return fmt.Errorf("cron job %q of service %s is declared twice: give one of them another name", j.Name, j.Service)
		}
		want[k] = parsed{j, sched}
	}

	s.setMu.Lock()
	defer s.setMu.Unlock()

	// Load the history of new jobs without holding mu: a store may be slow.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	var fresh []jobKey
	for k := range want {
		if s.jobs[k] == nil {
			fresh = append(fresh, k)
		}
	}
	s.mu.Unlock()
	loaded := map[jobKey][]Run{}
	for _, k := range fresh {
		loaded[k] = s.load(k)
	}

	s.mu.Lock()
	defer s.poke()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	now := s.opts.Clock.Now()
	for k, e := range s.jobs {
		if _, ok := want[k]; ok {
			continue
		}
		if len(e.running) == 0 {
			delete(s.jobs, k)
		} else {
			e.removed = true
		}
	}
	for k, p := range want {
		e := s.jobs[k]
		switch {
		case e == nil:
			e = &entry{job: p.job, sched: p.sched, running: map[*run]struct{}{}, history: loaded[k]}
			if last := lastScheduled(e.history); !last.IsZero() {
				e.next = p.sched.next(last)
			} else {
				e.next = p.sched.next(now)
			}
			s.jobs[k] = e
		case e.removed || !sameJob(e.job, p.job):
			e.job, e.sched, e.removed = p.job, p.sched, false
			e.next = p.sched.next(now)
		}
	}
	return nil
}

// load returns a job's persisted history, oldest first, at most
// HistorySize runs.
func (s *Scheduler) load(k jobKey) []Run {
	if s.opts.Store == nil {
		return nil
	}
	runs, err := s.opts.Store.LoadRuns(k.service, k.name)
	if err != nil {
		s.log.Error("loading cron history", zap.String("service", k.service), zap.String("job", k.name), zap.Error(err))
		return nil
	}
	runs = append([]Run(nil), runs...)
	sort.SliceStable(runs, func(a, b int) bool { return runs[a].Started.Before(runs[b].Started) })
	if len(runs) > s.opts.HistorySize {
		runs = runs[len(runs)-s.opts.HistorySize:]
	}
	return runs
}

// lastScheduled is the latest fire time handled (run, skipped or missed);
// manual runs do not count.
func lastScheduled(runs []Run) time.Time {
	var last time.Time
	for _, r := range runs {
		if !r.Manual && r.Scheduled.After(last) {
			last = r.Scheduled
		}
	}
	return last
}

func sameJob(a, b Job) bool {
	return reflect.DeepEqual(a, b)
}

// Trigger runs a job now, outside its schedule. Under overlap skip it
// refuses while a run is in progress; under replace it cancels it.
func (s *Scheduler) Trigger(service, name string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	e := s.jobs[jobKey{service, name}]
	if e == nil || e.removed {
		s.mu.Unlock()
		return fmt.Errorf("cron job %q of service %s does not exist", name, service)
	}
	if e.job.Overlap == OverlapSkip && len(e.running) > 0 {
		s.mu.Unlock()
		return fmt.Errorf("cron job %q of service %s is still running (overlap skip): wait for it to finish", name, service)
	}
	now := s.opts.Clock.Now()
	s.start(e, now, now, true)
	s.mu.Unlock()
	return nil
}

// History returns a job's recent runs, oldest first.
func (s *Scheduler) History(service, name string) []Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.jobs[jobKey{service, name}]
	if e == nil {
		return nil
	}
	return append([]Run(nil), e.history...)
}

// Next returns a job's next fire time; false if there is no such job or
// it never fires again.
func (s *Scheduler) Next(service, name string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.jobs[jobKey{service, name}]
	if e == nil || e.removed || e.next.IsZero() {
		return time.Time{}, false
	}
	return e.next, true
}

// Close stops the scheduler, cancels the runs in progress and waits for
// them to be recorded (as cancelled, unless they finished first).
func (s *Scheduler) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	<-s.done
	s.runs.Wait()
	return nil
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Scheduler) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		s.passes++
		pass := s.passes
		now := s.opts.Clock.Now()
		wait := maxSleep
		var recs []Run
		for _, e := range s.jobs {
			if e.removed || e.next.IsZero() {
				continue
			}
			if !e.next.After(now) {
				recs = append(recs, s.tick(e, now)...)
			}
			if !e.next.IsZero() {
				wait = min(wait, e.next.Sub(now))
			}
		}
		s.mu.Unlock()
		for _, r := range recs {
			s.persist(r)
		}
		s.passesDone.Store(pass)
		select {
		case <-s.opts.Clock.After(wait):
		case <-s.wake:
		case <-s.ctx.Done():
			return
		}
	}
}

// tick handles e's fire time, which is not after now. If the loop woke so
// late that later fire times passed too (a suspend, or a restart after
// downtime), only the latest runs; the ones before it become one missed
// record. It returns the records to persist. Called with mu held.
func (s *Scheduler) tick(e *entry, now time.Time) []Run {
	due := e.next
	latest, missed, next := e.sched.catchUp(due, now)
	e.next = next
	var recs []Run
	if missed > 0 {
		rec := Run{
			Job: e.job.Name, Service: e.job.Service, Scheduled: due, Started: now, Status: StatusMissed,
			Error: fmt.Sprintf("%d run(s) from %s on did not happen (podcell was not running or the machine was suspended); the one of %s ran late instead",
				missed, due.Format(time.RFC3339), latest.Format(time.RFC3339)),
		}
		s.record(e, rec)
		recs = append(recs, rec)
	}
	if rec, ok := s.start(e, latest, now, false); !ok {
		recs = append(recs, rec)
	}
	return recs
}

// start begins a run of e, applying its overlap policy. When the policy
// skips the run, start records it and returns the record and false.
// Called with mu held.
func (s *Scheduler) start(e *entry, scheduled, now time.Time, manual bool) (Run, bool) {
	rec := Run{Job: e.job.Name, Service: e.job.Service, Scheduled: scheduled, Started: now, Manual: manual}
	if len(e.running) > 0 {
		switch e.job.Overlap {
		case OverlapSkip:
			rec.Status = StatusSkipped
			rec.Error = "the previous run was still running (overlap skip)"
			s.record(e, rec)
			return rec, false
		case OverlapReplace:
			for r := range e.running {
				r.replaced = true
				r.cancel()
			}
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, budget(e.job, now, e.next))
	r := &run{job: e.job, loc: e.sched.loc, rec: rec, cancel: cancel}
	e.running[r] = struct{}{}
	s.runs.Add(1)
	go s.execute(ctx, e, r)
	return rec, true
}

// budget bounds a run's attempts together: Timeout × (Retries+1), and no
// later than the job's next fire time, so retries do not run into the next
// tick. A run always gets one full Timeout, even when it started late.
func budget(j Job, now, next time.Time) time.Duration {
	timeout := time.Duration(j.Timeout)
	b := timeout * time.Duration(j.Retries+1)
	if !next.IsZero() {
		if until := next.Sub(now); until < b {
			b = max(until, timeout)
		}
	}
	return b
}

func (s *Scheduler) execute(ctx context.Context, e *entry, r *run) {
	defer s.runs.Done()
	defer r.cancel()
	rec := s.send(ctx, r)

	s.mu.Lock()
	delete(e.running, r)
	if rec.Status == StatusCancelled && r.replaced {
		rec.Error = "replaced by a newer run (overlap replace)"
	}
	s.record(e, rec)
	if e.removed && len(e.running) == 0 {
		k := jobKey{e.job.Service, e.job.Name}
		if s.jobs[k] == e {
			delete(s.jobs, k)
		}
	}
	s.mu.Unlock()
	s.persist(rec)
}

// record appends to e's history, keeping the latest HistorySize runs.
// Called with mu held.
func (s *Scheduler) record(e *entry, rec Run) {
	e.history = append(e.history, rec)
	if n := len(e.history) - s.opts.HistorySize; n > 0 {
		e.history = append([]Run(nil), e.history[n:]...)
	}
}

// persist hands a record to the store and the OnRun hook, outside mu.
func (s *Scheduler) persist(rec Run) {
	if s.opts.Store != nil {
		if err := s.opts.Store.SaveRun(rec); err != nil {
			s.log.Error("saving cron run", zap.String("service", rec.Service), zap.String("job", rec.Job), zap.Error(err))
		}
	}
	if s.opts.OnRun != nil {
		s.opts.OnRun(rec)
	}
	log := s.log.Info
	if rec.Status == StatusFailed {
		log = s.log.Warn
	}
	log("cron run", zap.String("service", rec.Service), zap.String("job", rec.Job), zap.Bool("manual", rec.Manual),
		zap.Time("scheduled", rec.Scheduled), zap.String("status", string(rec.Status)), zap.Int("status_code", rec.StatusCode),
		zap.Int("attempts", rec.Attempts), zap.Duration("duration", rec.Duration), zap.String("error", rec.Error))
}
