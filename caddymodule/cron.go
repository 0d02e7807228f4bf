package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler"
)

// Scheduled calls (docs/cron.md). One cron.Scheduler per store lives in a
// usage pool across reloads; each config's Start hands it every job of
// its services, and a job's requests go through the same serve path as
// user traffic, in process.

// CronJob is a scheduled call to the service, as the handler's JSON and
// the admin API have it. Unset fields take the defaults of docs/cron.md.
type CronJob struct {
	// Name identifies the job within its service: 1-40 lowercase letters,
	// digits and '-'. Default: the path and a hash of schedule and path.
	Name string `json:"name,omitempty"`
	// Schedule is 5 cron fields or @hourly, @daily, @weekly, @monthly,
	// @yearly, @every <duration>.
	Schedule string `json:"schedule"`
	// Method is GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
	Method string `json:"method,omitempty"`
	// Path starts with '/' and may carry a query.
	Path string `json:"path"`
	// Body is sent with the request; not with GET or HEAD.
	Body   string      `json:"body,omitempty"`
	Header http.Header `json:"header,omitempty"`
	// TimeZone is the IANA zone the schedule is read in (default UTC).
	TimeZone string `json:"tz,omitempty"`
	// Timeout bounds one attempt (default 1m).
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Retries of a failed attempt (5xx, 429, connection error), 0 to 10.
	Retries int `json:"retries,omitempty"`
	// Overlap is skip (default), allow or replace.
	Overlap cron.Overlap `json:"overlap,omitempty"`
}

// job is c as the scheduler's job of service, defaults filled in.
func (c CronJob) job(service string) cron.Job {
	return cron.Job{
		Service:  service,
		Name:     c.Name,
		Schedule: c.Schedule,
		Method:   c.Method,
		Path:     c.Path,
		Body:     c.Body,
		Header:   c.Header,
		TimeZone: c.TimeZone,
		Timeout:  time.Duration(c.Timeout),
		Retries:  c.Retries,
		Overlap:  c.Overlap,
	}.WithDefaults()
}

// cronJobOf is job j as the API shows it.
func cronJobOf(j cron.Job) CronJob {
	return CronJob{Name: j.Name, Schedule: j.Schedule, Method: j.Method, Path: j.Path, Body: j.Body, Header: j.Header,
		TimeZone: j.TimeZone, Timeout: caddy.Duration(j.Timeout), Retries: j.Retries, Overlap: j.Overlap}
}

// validateCron checks a service's jobs; errors name the job and the field.
func validateCron(service string, jobs []CronJob) error {
	seen := map[string]bool{}
	for _, c := range jobs {
		j := c.job(service)
		if err := j.Validate(); err != nil {
			return err
		}
		if seen[j.Name] {
			return fmt.Errorf("cron job %q of service %s is declared twice: give one of them another name", j.Name, service)
		}
		seen[j.Name] = true
	}
	return nil
}

// CronSecretEnv carries the service's cron secret into its containers, to
// check the Podcell-Cron-Secret header of a scheduled call against.
const CronSecretEnv = "PODCELL_CRON_SECRET"

// withCronSecret is cfg with the service's cron secret in its env.
func withCronSecret(cfg scaler.ServiceConfig, secret string) scaler.ServiceConfig {
	env := make(map[string]string, len(cfg.Env)+1)
	maps.Copy(env, cfg.Env)
	env[CronSecretEnv] = secret
	cfg.Env = env
	return cfg
}

// cronHistory is how many runs per job the store keeps, as many as the
// scheduler keeps in memory.
const cronHistory = 50

// schedulers keeps one scheduler per store directory, which holds its
// run history; keyed like stores, so the two go together.
var schedulers = caddy.NewUsagePool()

type pooledScheduler struct{ s *cron.Scheduler }

func (p pooledScheduler) Destruct() error { return p.s.Close() }

// openScheduler takes this config's reference on the scheduler of its
// store. It starts with no jobs; Start gives it the config's.
func (a *App) openScheduler() error {
	st := a.st
	val, _, err := schedulers.LoadOrNew(a.stKey, func() (caddy.Destructor, error) {
		log := caddy.Log().Named("podcell.cron")
		s, err := cron.New(cron.Options{
			Transport: cronTransport{},
			Secret: func(service string) string {
				secret, err := st.CronSecret(service)
				if err != nil {
					log.Error("reading the cron secret; the call goes without it", zap.String("service", service), zap.Error(err))
				}
				return secret
			},
			Store: cronStore{st},
			// The running config's hub: the scheduler outlives this app.
			OnRun: func(r cron.Run) {
				if cur := current.Load(); cur != nil {
					cur.hub.Metrics.CronRun(r.Service, r.Job, string(r.Status))
				}
			},
			Logger:      log,
			HistorySize: cronHistory,
		})
		if err != nil {
			return nil, err
		}
		return pooledScheduler{s}, nil
	})
	if err != nil {
		return err
	}
	a.cron = val.(pooledScheduler).s
	return nil
}

// cronEntry is one job of a service and who declared it.
type cronEntry struct {
	job    cron.Job
	source string // "config" or "api"
}

// cronJobsLocked lists a service's jobs: the config's, then those the
// admin API stored. A config job shadows a stored one of the same name,
// and a stored job that is no longer valid is left out (and logged), so
// that one bad record cannot stop every other job.
func (a *App) cronJobsLocked(ref *serviceRef) []cronEntry {
	var out []cronEntry
	seen := map[string]bool{}
	for _, c := range ref.cron {
		j := c.job(ref.cfg.Name)
		out = append(out, cronEntry{j, "config"})
		seen[j.Name] = true
	}
	stored, err := a.storedCronJobs(ref.cfg.Name)
	if err != nil {
		a.log.Error("reading cron jobs from the store; the stored ones do not run", zap.String("service", ref.cfg.Name), zap.Error(err))
	}
	for _, c := range stored {
		j := c.job(ref.cfg.Name)
		if seen[j.Name] {
			a.log.Warn("the config declares a cron job the admin API also stored; the config wins", zap.String("service", ref.cfg.Name), zap.String("job", j.Name))
			continue
		}
		if err := j.Validate(); err != nil {
			a.log.Error("a stored cron job is invalid; it does not run", zap.Error(err))
			continue
		}
		out = append(out, cronEntry{j, "api"})
		seen[j.Name] = true
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].job.Name < out[j].job.Name })
	return out
}

// storedCronJobs are the jobs the admin API stored for a service.
func (a *App) storedCronJobs(service string) ([]CronJob, error) {
	return store.CronJobs[CronJob](a.st, service)
}

// syncCronLocked gives the scheduler every job of the services this config
// runs. Unchanged jobs keep their next fire time and their runs in
// progress, so calling it again is harmless.
func (a *App) syncCronLocked() error {
	var jobs []cron.Job
	for _, ref := range a.services {
		for _, e := range a.cronJobsLocked(ref) {
			jobs = append(jobs, e.job)
		}
	}
	return a.cron.Set(jobs)
}

// cronStore keeps the scheduler's run history in the store.
type cronStore struct{ st *store.Store }

func (c cronStore) SaveRun(r cron.Run) error {
	return c.st.AddCronRun(r.Service, r.Job, r.Started, r.Scheduled, r, cronHistory)
}

func (c cronStore) LoadRuns(service, job string) ([]cron.Run, error) {
	return store.CronRuns[cron.Run](c.st, service, job)
}

// cronTransport serves the scheduler's requests in process, through the
// serve path of user traffic of the running config: the service starts
// from zero, its requests queue and it is proxied as for anyone else.
type cronTransport struct{}

// maxCronBody bounds what is kept of a response: the scheduler reads only
// the start of a failed one, for its run record.
const maxCronBody = 4 << 10

func (cronTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body := req.Body
	if body == nil {
		body = http.NoBody
	}
	defer body.Close() // a RoundTripper closes the body, even on errors
	a := current.Load()
	if a == nil {
		return nil, errors.New("podcell is not running: no config with a podcell app is loaded")
	}
	ref := a.route(req.Host)
	if ref == nil {
		return nil, fmt.Errorf("service %s is not in the running config", req.Host)
	}
	// What the HTTP server would hand a handler.
	in := &http.Request{
		Method:        req.Method,
		URL:           &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        req.Header.Clone(),
		Body:          body,
		ContentLength: req.ContentLength,
		Host:          req.Host,
		RemoteAddr:    "127.0.0.1:0",
		RequestURI:    req.URL.RequestURI(),
	}
	in = in.WithContext(req.Context())
	w := &cronRecorder{header: http.Header{}}
	in = caddyhttp.PrepareRequest(in, caddy.NewReplacer(), w, &caddyhttp.Server{})
	err := serve(w, in, ref, a.rp, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	if ctxErr := req.Context().Err(); ctxErr != nil {
		return nil, ctxErr
	}
	if err != nil {
		// What Caddy's error handling would answer a client.
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) || he.StatusCode < 400 || he.StatusCode > 599 {
			return nil, err
		}
		w.code = he.StatusCode
		w.body.Reset()
		if he.Err != nil {
			w.body.WriteString(he.Err.Error())
		}
	}
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", w.code, http.StatusText(w.code)),
		StatusCode:    w.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()),
		Request:       req,
	}, nil
}

// cronRecorder keeps a response for cronTransport, its body cut at
// maxCronBody.
type cronRecorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *cronRecorder) Header() http.Header { return w.header }

func (w *cronRecorder) WriteHeader(code int) {
	// 1xx answers are interim; the final one follows.
	if w.code == 0 && code >= 200 {
		w.code = code
	}
}

func (w *cronRecorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if room := maxCronBody - w.body.Len(); room > 0 {
		w.body.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

var (
	_ http.RoundTripper = cronTransport{}
	_ cron.Store        = cronStore{}
)
