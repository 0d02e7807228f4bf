package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/podcell/podcell/caddymodule/observe"
	"github.com/podcell/podcell/scaler"
)

// Gateway is a service's way in, for the Caddy handler's requests and the
// scheduler's alike: it waits for the service's first revision, takes an
// instance from the scaler and counts each answer. It outlives revisions
// and config reloads: the controller points it at the scaler's service
// each time the service is applied.
type Gateway struct {
	name    string
	webhook atomic.Pointer[string] // the webhook path of a git service
	svc     atomic.Pointer[scaler.Service]
	ready   chan struct{} // closed once svc is set
	once    sync.Once
	wait    atomic.Int64 // the queue timeout, for the wait for a first revision
	// building says a git service's build runs while it has no revision;
	// failed is why its last build failed then. Requests get either at
	// once: a first build takes minutes, longer than a client waits, and
	// a failed one is not coming. failedCh is closed when failed is set,
	// for requests that waited before the build began. All are read only
	// while svc is nil (the request path of a running service never takes
	// mu).
	mu        sync.Mutex
	building  bool
	failed    string
	failedCh  chan struct{}
	requests  *observe.Requests
	upstreams upstreamValues
	// client sends Do's requests; its transport keeps connections to the
	// instances as reverse_proxy does.
	client *http.Client
}

func newGateway(name string, requests *observe.Requests) *Gateway {
	g := &Gateway{name: name, ready: make(chan struct{}), failedCh: make(chan struct{}), requests: requests,
		client: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second},
			// An app's redirect is its answer, as through reverse_proxy.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
	g.wait.Store(int64(30 * time.Second))
	return g
}

// Name is the service's name.
func (g *Gateway) Name() string { return g.name }

func (g *Gateway) declare(queueTimeout time.Duration, webhookPath string) {
	g.wait.Store(int64(queueTimeout))
	g.webhook.Store(&webhookPath)
}

// WebhookPath is the path of the service's webhook, "" if it has none.
// Requests to it go to Controller.ServeWebhook, not to an instance.
func (g *Gateway) WebhookPath() string {
	if p := g.webhook.Load(); p != nil {
		return *p
	}
	return ""
}

// set points the gateway at svc, waking requests that waited for a first one.
func (g *Gateway) set(svc *scaler.Service) {
	g.svc.Store(svc)
	g.once.Do(func() { close(g.ready) })
}

// Service is the scaler's service, once it runs. A git service that has
// not run yet answers at once: ErrBuilding while its first build runs, a
// *BuildFailedError when that build failed. Otherwise (the controller has
// not started yet: Caddy may start the http app first) it waits up to the
// service's queue timeout for a first revision, or for its build's
// failure.
func (g *Gateway) Service(ctx context.Context) (*scaler.Service, error) {
	if svc := g.svc.Load(); svc != nil {
		return svc, nil
	}
	g.mu.Lock()
	building, failed, failedCh := g.building, g.failed, g.failedCh
	g.mu.Unlock()
	switch {
	case failed != "":
		return nil, &BuildFailedError{Reason: failed}
	case building:
		return nil, ErrBuilding
	}
	t := time.NewTimer(time.Duration(g.wait.Load()))
	defer t.Stop()
	select {
	case <-g.ready:
		return g.svc.Load(), nil
	case <-failedCh:
		g.mu.Lock()
		defer g.mu.Unlock()
		return nil, &BuildFailedError{Reason: g.failed}
	case <-t.C:
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.building {
			return nil, ErrBuilding
		}
		return nil, ErrNoRevision
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// buildFailed: the service's build failed. Without a revision running,
// requests are told so from now on, until the next build starts.
func (g *Gateway) buildFailed(reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.building = false
	if g.svc.Load() != nil || g.failed != "" {
		return
	}
	if reason == "" {
		reason = "the build failed"
	}
	g.failed = reason
	close(g.failedCh)
}

// buildStarted: until the build ends, a service with no revision answers
// that it is building.
func (g *Gateway) buildStarted() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.building = true
	if g.failed != "" {
		g.failed, g.failedCh = "", make(chan struct{})
	}
}

// state is what a service with no revision is doing: StateBuilding,
// StateBuildFailed (with the reason) or StateNoRevision; StateServing once
// it runs.
func (g *Gateway) state() (state, reason string) {
	if g.svc.Load() != nil {
		return StateServing, ""
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.failed != "":
		return StateBuildFailed, g.failed
	case g.building:
		return StateBuilding, ""
	}
	return StateNoRevision, ""
}

// The states of a service, as ServiceStatus.State has them.
const (
	StateServing     = "serving"      // a revision runs (instances start on demand)
	StateBuilding    = "building"     // a git service's first build runs
	StateBuildFailed = "build_failed" // its last build failed and no revision ran yet
	StateNoRevision  = "no_revision"  // nothing runs yet, and no build either
)

// ErrNoRevision: the service has not run yet, and no build of it runs.
var ErrNoRevision = errors.New("no revision deployed yet")

// ErrBuilding: the service has not run yet; its first build runs.
var ErrBuilding = errors.New("building its first revision")

// BuildFailedError: the service has not run yet and its last build failed.
type BuildFailedError struct{ Reason string }

func (e *BuildFailedError) Error() string { return "its build failed: " + e.Reason }

// maxAnswerLine bounds what firstLine keeps of a reason for an answer.
const maxAnswerLine = 300

// firstLine is s up to its first line break, as an anonymous client may
// read it in an answer's one-line body: a build's reason quotes what the
// repository wrote (its commands, a tool's output), so control characters
// (terminal escapes) become '?' and it ends after maxAnswerLine bytes, on a
// character boundary, with "...". The whole reason stays in the build's
// record.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	cut := len(s) > maxAnswerLine
	if cut {
		s = strings.ToValidUTF8(s[:maxAnswerLine], "")
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
	if cut {
		s += "..."
	}
	return s
}

// Attempt is one try of a request on an instance.
type Attempt struct {
	Addr string // host:port of the instance's app
	// Upstream is Addr in an interface value made once per instance (for
	// Caddy's replacer, so the request path does not allocate).
	Upstream any
	Woke     bool          // the request started or resumed an instance
	Waited   time.Duration // how long it queued
}

// Try runs fn on an instance of the service (scaler.Service.TryWait),
// holding it for fn's length. fn reports a connection the instance
// refused, before anything reached the app, by returning an error that
// wraps scaler.ErrRefused: fn then runs once more on another instance.
func (g *Gateway) Try(ctx context.Context, fn func(Attempt) error) error {
	svc, err := g.Service(ctx)
	if err != nil {
		return err
	}
	return svc.TryWait(ctx, func(addr string, w scaler.Wait) error {
		return fn(Attempt{Addr: addr, Upstream: g.upstreams.value(addr), Woke: w.Wake != scaler.WakeNone, Waited: w.Waited})
	})
}

// upstreamValues holds each instance address boxed in an interface value,
// as Caddy's replacer takes it: boxing a string allocates, and the warm
// path allocates nothing. Copy on write: a request only loads the map; a
// new address (a new instance) copies it. Instances come and go on new
// ports, so a full map starts again empty and refills with the addresses
// in use.
type upstreamValues struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]any]
}

const maxUpstreamValues = 1024

func (u *upstreamValues) value(addr string) any {
	if m := u.m.Load(); m != nil {
		if v, ok := (*m)[addr]; ok {
			return v
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	m := map[string]any{}
	if old := u.m.Load(); old != nil {
		if v, ok := (*old)[addr]; ok {
			return v // another request added it meanwhile
		}
		if len(*old) < maxUpstreamValues {
			m = maps.Clone(*old)
		}
	}
	v := any(addr)
	m[addr] = v
	u.m.Store(&m)
	return v
}

// Count records one answer of the service.
func (g *Gateway) Count(code int, took time.Duration, detail string) {
	g.requests.Done(code, took, detail)
}

// StatusOf is the answer a client should see for a failure to reach an
// instance: 503 with Retry-After when the service is saturated or not
// deployed yet, 502 when its instances cannot start, 499 when the client
// went away. retryAfter is "" when none is due. msg is one line a client
// may read (what happened and what to do): it names no internal address.
func StatusOf(service string, err error) (code int, retryAfter string, msg error) {
	var se *scaler.StartError
	var bf *BuildFailedError
	switch {
	case errors.Is(err, ErrNoRevision):
		return http.StatusServiceUnavailable, "10", fmt.Errorf("service %s: no revision deployed yet", service)
	case errors.Is(err, ErrBuilding):
		return http.StatusServiceUnavailable, "10", fmt.Errorf("service %s: building its first revision; retry in a moment (caddy podcell builds %s shows the build)", service, service)
	case errors.As(err, &bf):
		return http.StatusServiceUnavailable, "30", fmt.Errorf("service %s: build failed: %s; see caddy podcell builds %s", service, firstLine(bf.Reason), service)
	case errors.Is(err, scaler.ErrQueueFull):
		return http.StatusServiceUnavailable, "1", fmt.Errorf("service %s: too many requests waiting (queue_size); retry in a moment", service)
	case errors.Is(err, scaler.ErrQueueTimeout):
		return http.StatusServiceUnavailable, "5", fmt.Errorf("service %s: no instance was free within queue_timeout; retry in a moment", service)
	case errors.As(err, &se):
		return http.StatusBadGateway, "", fmt.Errorf("service %s: %s", service, se.Reason)
	case errors.Is(err, scaler.ErrClosed):
		return http.StatusServiceUnavailable, "1", err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return 499, "", err
	}
	return http.StatusBadGateway, "", err
}

// maxDoBody bounds what Do keeps of a response body: the scheduler reads
// only the start of a failed one, for its run record.
const maxDoBody = 4 << 10

// Do sends req (its URL's path and query, its method, header and body) to
// an instance of the service and returns the answer, its body cut at 4
// KiB, as a client of the service's route would get it: a failure to
// reach an instance is an answer too (503, 502...), as Caddy would give
// it. Only a canceled ctx, or an error no status stands for, is an error.
// The scheduler's calls come this way.
func (g *Gateway) Do(ctx context.Context, req *http.Request) (*http.Response, error) {
	start := time.Now()
	body := []byte(nil)
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	var resp *http.Response
	err := g.Try(ctx, func(a Attempt) error {
		out, err := http.NewRequestWithContext(ctx, req.Method, "http://"+a.Addr+req.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			return err
		}
		out.Header = req.Header.Clone()
		out.Host = g.name
		// What reverse_proxy adds for a local client.
		out.Header.Set("X-Forwarded-For", "127.0.0.1")
		out.Header.Set("X-Forwarded-Proto", "http")
		out.Header.Set("X-Forwarded-Host", g.name)
		r, err := g.client.Do(out)
		if err != nil {
			if isRefused(err) {
				return fmt.Errorf("%w: %w", scaler.ErrRefused, err)
			}
			return err
		}
		defer r.Body.Close()
		kept, err := io.ReadAll(io.LimitReader(r.Body, maxDoBody))
		if err == nil {
			_, err = io.Copy(io.Discard, r.Body)
		}
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(kept))
		r.ContentLength = int64(len(kept))
		r.Request = req
		resp = r
		return nil
	})
	if ctxErr := ctx.Err(); ctxErr != nil {
		g.Count(499, time.Since(start), ctxErr.Error())
		return nil, ctxErr
	}
	if err != nil {
		code, retryAfter, msg := StatusOf(g.name, err)
		g.Count(code, time.Since(start), msg.Error())
		resp = &http.Response{StatusCode: code, Header: http.Header{}, Request: req,
			Body: io.NopCloser(bytes.NewReader([]byte(msg.Error()))), ContentLength: int64(len(msg.Error()))}
		if retryAfter != "" {
			resp.Header.Set("Retry-After", retryAfter)
		}
	} else {
		g.Count(resp.StatusCode, time.Since(start), "")
	}
	resp.Status = strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	return resp, nil
}

// isRefused reports a connection the instance refused.
func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
