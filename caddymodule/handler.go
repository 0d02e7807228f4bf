package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/podcell/podcell/scaler"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves a route from a podcell service: it takes an instance from
// the scaler (starting or resuming one if needed, queueing meanwhile) and
// proxies the request to it with Caddy's reverse_proxy.
type Handler struct {
	// Service is the service's name: lowercase letters, digits and '-'.
	// Empty in host mode.
	Service string `json:"service,omitempty"`
	// Hosts turns on host mode: the handler serves every service, whether
	// the Caddyfile or the admin API declared it, at <service>.<domain> for
	// each pattern "*.<domain>" (e.g. "*.apps.localhost"). Host mode
	// declares no service itself.
	Hosts []string `json:"hosts,omitempty"`

	// The service's settings (with Service).
	ServiceSpec

	// StreamCloseDelay keeps WebSockets and other upgraded streams open for
	// this long after a config reload (as reverse_proxy's stream_close_delay).
	StreamCloseDelay caddy.Duration `json:"stream_close_delay,omitempty"`

	app      *App
	ref      *serviceRef // nil in host mode
	suffixes []string    // ".<domain>" of each Hosts pattern, lowercase
	rp       *reverseproxy.Handler
	log      *zap.Logger
}

func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.podcell",
		New: func() caddy.Module { return new(Handler) },
	}
}

// upstreamPlaceholder carries the chosen instance's address to reverse_proxy.
const upstreamPlaceholder = "http.podcell.upstream"

func (h *Handler) Provision(ctx caddy.Context) error {
	h.log = ctx.Logger()
	if err := h.Validate(); err != nil {
		return err
	}
	appIface, err := ctx.App("podcell")
	if err != nil {
		return err
	}
	h.app = appIface.(*App)
	for _, p := range h.Hosts {
		suffix, _ := hostSuffix(p) // checked by Validate
		h.suffixes = append(h.suffixes, suffix)
	}
	if h.Service != "" {
		// Only here, for what the config's author wrote, do placeholders
		// resolve: never for the admin API's values (placeholders.go).
		cfg := h.ServiceSpec.config(h.Service)
		if err := resolveConfigSecrets(&cfg, h.Git); err != nil {
			return fmt.Errorf("podcell service %s: %w", h.Service, err)
		}
		if h.ref, err = h.app.declare(cfg, h.Git, h.Cron); err != nil {
			return err
		}
	}
	h.rp = newProxy(h.StreamCloseDelay)
	return h.rp.Provision(ctx)
}

// newProxy is the reverse proxy that serve hands requests to: it dials
// the instance the scaler picked, through upstreamPlaceholder.
func newProxy(streamCloseDelay caddy.Duration) *reverseproxy.Handler {
	return &reverseproxy.Handler{
		Upstreams:        reverseproxy.UpstreamPool{{Dial: "{" + upstreamPlaceholder + "}"}},
		StreamCloseDelay: streamCloseDelay,
	}
}

// Validate rejects a config that would fail at the first request.
func (h *Handler) Validate() error {
	if len(h.Hosts) > 0 {
		if h.Service != "" {
			return fmt.Errorf("podcell: set a service or hosts, not both (hosts serves every service by its host name)")
		}
		if !reflect.DeepEqual(h.ServiceSpec, ServiceSpec{}) {
			return fmt.Errorf("podcell hosts %v: service settings (image, memory...) belong to a named service, not to host mode", h.Hosts)
		}
		for _, p := range h.Hosts {
			if _, err := hostSuffix(p); err != nil {
				return err
			}
		}
		return nil
	}
	if h.Service == "" {
		return fmt.Errorf("podcell: a service name (or hosts, for host mode) is required")
	}
	return h.ServiceSpec.validate(h.Service)
}

// hostSuffix checks a host pattern "*.<domain>" and returns ".<domain>".
func hostSuffix(pattern string) (string, error) {
	domain, ok := strings.CutPrefix(pattern, "*.")
	if !ok || domain == "" || strings.ContainsAny(domain, "*/: ") {
		return "", fmt.Errorf("podcell hosts %q: use a wildcard pattern such as *.apps.localhost (services answer at <service>.apps.localhost)", pattern)
	}
	return "." + strings.ToLower(domain), nil
}

// serviceForHost finds the service a host-mode request is for: the first
// label of the host when the rest matches a pattern.
func (h *Handler) serviceForHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	for _, suffix := range h.suffixes {
		if len(host) > len(suffix) && strings.EqualFold(host[len(host)-len(suffix):], suffix) {
			name := host[:len(host)-len(suffix)]
			if !strings.Contains(name, ".") {
				// Host names are case-insensitive; service names are
				// lowercase. ToLower returns name itself, with no
				// allocation, when it is lowercase already.
				return strings.ToLower(name)
			}
		}
	}
	return ""
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Only podcell's own scheduled calls carry these, so that a service
	// can trust them: an outside caller must not pose as the scheduler.
	for k := range r.Header {
		if isCronHeader(k) {
			delete(r.Header, k)
		}
	}
	ref := h.ref
	if ref == nil {
		name := h.serviceForHost(r.Host)
		if ref = h.app.route(name); ref == nil {
			// Not counted: there is no service to count it under.
			if name == "" {
				return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("host %q is not <service>.<domain> for hosts %v", r.Host, h.Hosts))
			}
			return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("no service %q", name))
		}
	}
	return serve(w, r, ref, h.rp, next)
}

// cronHeaderPrefix starts the names of the headers of a scheduled call.
const cronHeaderPrefix = "Podcell-Cron"

// isCronHeader says whether an app could take header name k for one of
// the scheduler's headers. Servers map names to variables loosely: CGI,
// WSGI and PHP turn '-' (and some '.' or '_') into '_' and ignore case, so
// Podcell_Cron_Secret and podcell.cron-secret reach an app as the same
// HTTP_PODCELL_CRON_SECRET as Podcell-Cron-Secret. Any character other
// than a letter or a digit therefore matches any other; case is ignored.
// It allocates nothing: it runs for every header of every request.
func isCronHeader(k string) bool {
	if len(k) < len(cronHeaderPrefix) {
		return false
	}
	for i := 0; i < len(cronHeaderPrefix); i++ {
		c, want := k[i], cronHeaderPrefix[i]
		if want == '-' {
			if isAlnum(c) {
				return false
			}
			continue
		}
		if c|0x20 != want|0x20 {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z'
}

// serve is a service's request path, for user traffic and scheduled calls
// alike: it takes an instance from the scaler (starting or resuming one,
// queueing meanwhile), proxies the request to it with rp, and counts the
// answer. r's context must carry a caddy.Replacer.
func serve(w http.ResponseWriter, r *http.Request, ref *serviceRef, rp *reverseproxy.Handler, next caddyhttp.Handler) error {
	start := time.Now()
	sw := statusWriters.Get().(*statusWriter)
	sw.ResponseWriter, sw.status = w, 0
	err := proxy(sw, r, ref, rp, next)
	code := sw.status
	sw.ResponseWriter = nil
	statusWriters.Put(sw)
	detail := ""
	if err != nil {
		code = http.StatusInternalServerError
		var he caddyhttp.HandlerError
		if errors.As(err, &he) {
			code = he.StatusCode
		}
		detail = err.Error()
	} else if code == 0 {
		code = http.StatusOK
	}
	ref.requests.Done(code, time.Since(start), detail)
	return err
}

// statusWriter remembers the status of the response; pooled, so that the
// request path allocates nothing for it.
type statusWriter struct {
	caddyhttp.ResponseWriterWrapper
	status int
}

var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// proxy takes an instance of ref's service and proxies the request to it.
func proxy(w *statusWriter, r *http.Request, ref *serviceRef, rp *reverseproxy.Handler, next caddyhttp.Handler) error {
	if ref.src != nil && ref.src.WebhookPath != "" && r.URL.Path == ref.src.WebhookPath {
		return serveWebhook(w, r, ref.src, ref.dep)
	}
	svc := ref.svc.Load()
	if svc == nil {
		// The podcell app has not started yet, or the first build of a
		// git service is still running.
		t := time.NewTimer(ref.cfg.QueueTimeout)
		defer t.Stop()
		select {
		case <-ref.ready:
			svc = ref.svc.Load()
		case <-t.C:
			w.Header().Set("Retry-After", "10")
			return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("service %s has no deployed revision yet", ref.cfg.Name))
		case <-r.Context().Done():
			return caddyhttp.Error(499, r.Context().Err())
		}
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	var proxyErr error
	err := svc.TryWait(r.Context(), func(addr string, wait scaler.Wait) error {
		repl.Set(upstreamPlaceholder, upstreams.value(addr))
		if wait.Wake != scaler.WakeNone {
			w.Header().Set("Podcell-Cold-Start", strconv.FormatInt(wait.Waited.Milliseconds(), 10)+"ms")
		}
		proxyErr = rp.ServeHTTP(w, r, next)
		// An instance that refuses the connection has just exited (its
		// event is on the way) or is going. Nothing reached the app and
		// nothing was answered, so the scaler hands the request to another
		// instance, once: a second refusal is answered as it is.
		var dialErr reverseproxy.DialError
		if proxyErr != nil && errors.As(proxyErr, &dialErr) && w.status == 0 {
			return scaler.ErrRefused
		}
		if proxyErr != nil {
			return errProxied
		}
		return nil
	})
	switch {
	case err == nil:
		return nil
	case err == errProxied || errors.Is(err, scaler.ErrRefused):
		return proxyErr
	}
	return acquireError(w, svc, err)
}

// errProxied tells serve's Try function's error (the proxy's, kept aside)
// from the scaler's.
var errProxied = errors.New("podcell: the proxy failed")

// upstreams holds each instance address boxed in an interface value, as
// the replacer takes it: boxing a string allocates, and the warm path
// allocates nothing. Copy on write: a request only loads the map; a new
// address (a new instance) copies it. Instances come and go on new ports,
// so a full map starts again empty and refills with the addresses in use.
var upstreams upstreamValues

const maxUpstreamValues = 1024

type upstreamValues struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]any]
}

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

// acquireError maps a scaler error to the answer a client should see:
// 503 with Retry-After when the service is saturated, 502 when its
// instances cannot start. Details go to the log, not to the client.
func acquireError(w http.ResponseWriter, svc *scaler.Service, err error) error {
	var se *scaler.StartError
	switch {
	case errors.Is(err, scaler.ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("service %s: queue full", svc.Name()))
	case errors.Is(err, scaler.ErrQueueTimeout):
		w.Header().Set("Retry-After", "5")
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("service %s: no instance within queue_timeout", svc.Name()))
	case errors.As(err, &se):
		return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("service %s: %s", svc.Name(), se.Reason))
	case errors.Is(err, scaler.ErrClosed):
		w.Header().Set("Retry-After", "1")
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client went away while waiting.
		return caddyhttp.Error(499, err)
	}
	return caddyhttp.Error(http.StatusBadGateway, err)
}

func (h *Handler) Cleanup() error {
	if h.rp != nil {
		return h.rp.Cleanup()
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
