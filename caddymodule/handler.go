package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/podcell/podcell/caddymodule/controller"
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
	controller.ServiceSpec

	// StreamCloseDelay keeps WebSockets and other upgraded streams open for
	// this long after a config reload (as reverse_proxy's stream_close_delay).
	StreamCloseDelay caddy.Duration `json:"stream_close_delay,omitempty"`

	ctrl     *controller.Controller
	gw       *controller.Gateway // nil in host mode
	suffixes []string            // ".<domain>" of each Hosts pattern, lowercase
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
	app := appIface.(*App)
	// Here, where the app's bandwidth_per_core is known.
	if err := scaler.CheckServiceBandwidth("bandwidth", h.ServiceSpec.BandwidthMbit, app.BandwidthPerCoreMbit); err != nil {
		return fmt.Errorf("podcell service %s: %w", h.Service, err)
	}
	h.ctrl = app.ctrl
	for _, p := range h.Hosts {
		suffix, _ := hostSuffix(p) // checked by Validate
		h.suffixes = append(h.suffixes, suffix)
	}
	if h.Service != "" {
		// Only here, for what the config's author wrote, do placeholders
		// resolve: never for the admin API's values (placeholders.go).
		d, err := declaration(h.Service, h.ServiceSpec)
		if err != nil {
			return fmt.Errorf("podcell service %s: %w", h.Service, err)
		}
		if err := app.declare(d); err != nil {
			return err
		}
		for _, w := range h.ServiceSpec.Warnings(h.Service) {
			h.log.Warn(w)
		}
		h.gw = h.ctrl.Gateway(h.Service)
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
		if !reflect.DeepEqual(h.ServiceSpec, controller.ServiceSpec{}) {
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
	return h.ServiceSpec.Validate(h.Service)
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
	gw := h.gw
	if gw == nil {
		name := h.serviceForHost(r.Host)
		if gw = h.ctrl.Route(name); gw == nil {
			// Not counted: there is no service to count it under.
			if name == "" {
				return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("host %q is not <service>.<domain> for hosts %v", r.Host, h.Hosts))
			}
			return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("no service %q", name))
		}
	}
	// The webhook is its own route: its POSTs are not the service's
	// traffic, and never reach an instance.
	if p := gw.WebhookPath(); p != "" && r.URL.Path == p {
		h.ctrl.ServeWebhook(w, r, gw.Name())
		return nil
	}
	return serve(w, r, gw, h.rp, next, h.log)
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

// serve is a service's request path: it takes an instance through the
// service's gateway (starting or resuming one, queueing meanwhile),
// proxies the request to it with rp, and counts the answer. r's context
// must carry a caddy.Replacer. A failure nothing was written for yet is
// answered by answerPlain, unless the site handles errors itself.
func serve(w http.ResponseWriter, r *http.Request, gw *controller.Gateway, rp *reverseproxy.Handler, next caddyhttp.Handler, log *zap.Logger) error {
	start := time.Now()
	sw := statusWriters.Get().(*statusWriter)
	sw.ResponseWriter, sw.status = w, 0
	err := proxy(sw, r, gw, rp, next)
	code := sw.status
	sw.ResponseWriter = nil
	statusWriters.Put(sw)
	detail := ""
	if err != nil {
		written := code != 0
		code = http.StatusInternalServerError
		var he caddyhttp.HandlerError
		if errors.As(err, &he) {
			code = he.StatusCode
		}
		detail = err.Error()
		if !written && answerPlain(w, r, gw.Name(), code, err) {
			// As Caddy logs an error no error route handles.
			log.Error(detail, zap.String("service", gw.Name()), zap.Int("status", code))
			err = nil
		}
	} else if code == 0 {
		code = http.StatusOK
	}
	gw.Count(code, time.Since(start), detail)
	return err
}

// answerPlain writes a 5xx failure as a one-line text/plain body that says
// what happened and what to do, and reports whether it did. Caddy would
// answer it with an empty body: a site without handle_errors leaves a
// client (and the user trying their first deploy) guessing. A site with
// error routes gets the error instead ({err.message} holds the same
// line), so its handle_errors shapes the answer. The line never carries
// the proxy's error, which names the instance's internal address.
func answerPlain(w http.ResponseWriter, r *http.Request, service string, code int, err error) bool {
	if code < 500 || code > 599 {
		return false
	}
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return false
	}
	var line string
	var pa plainAnswer
	switch {
	case errors.As(err, &pa):
		line = pa.Error()
	case code == http.StatusBadGateway:
		line = "service " + service + ": the app did not answer (its instance closed or refused the connection); see caddy podcell logs " + service
	case code == http.StatusGatewayTimeout:
		line = "service " + service + ": the app did not answer in time; see caddy podcell logs " + service
	default:
		line = "service " + service + ": " + http.StatusText(code)
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(code)
	io.WriteString(w, line+"\n")
	return true
}

// plainAnswer is an error whose text a client may read as it is: the
// gateway's (controller.StatusOf), which names no internal address.
type plainAnswer struct{ error }

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

// proxy proxies the request to an instance the gateway holds for it. An
// instance that refuses the connection has just exited (its event is on
// the way) or is going; nothing reached the app and nothing was answered,
// so the gateway gives the request to another instance, once. So does an
// instance that resets the connection before any answer (the request may
// have reached the app) to a request that is safe to send again (GET, HEAD, OPTIONS, TRACE with no body, as RFC
// 9110 section 9.2.2 allows a client to retry): an app that exits resets
// the connections still waiting in its listen queue, which its shutdown
// never accepted (Go's transport retries only on a reused connection).
func proxy(w *statusWriter, r *http.Request, gw *controller.Gateway, rp *reverseproxy.Handler, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	var proxyErr error
	err := gw.Try(r.Context(), func(a controller.Attempt) error {
		repl.Set(upstreamPlaceholder, a.Upstream)
		if a.Woke {
			w.Header().Set("Podcell-Cold-Start", strconv.FormatInt(a.Waited.Milliseconds(), 10)+"ms")
		}
		proxyErr = rp.ServeHTTP(w, r, next)
		switch {
		case proxyErr == nil:
			return nil
		case w.status == 0 && (isDialError(proxyErr) || resetBeforeAnswer(r, proxyErr)):
			return scaler.ErrRefused
		}
		return errProxied
	})
	switch {
	case err == nil:
		return nil
	case err == errProxied || err == scaler.ErrRefused:
		return proxyErr
	}
	// The gateway could not give the request an instance.
	code, retryAfter, msg := controller.StatusOf(gw.Name(), err)
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	return caddyhttp.Error(code, plainAnswer{msg})
}

// errProxied tells the proxy's failure (kept aside in proxyErr) from the
// gateway's in Try's error.
var errProxied = errors.New("podcell: the proxy failed")

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

// resetBeforeAnswer reports a connection the instance reset (nothing was
// answered: the caller checks that) for a request that can be sent again.
func resetBeforeAnswer(r *http.Request, err error) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	return (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0) && errors.Is(err, syscall.ECONNRESET)
}

// isDialError is errors.As in a func of its own: its target escapes, and
// declared on the request path it would be allocated for every request,
// not only for the failed ones.
func isDialError(err error) bool {
	var dialErr reverseproxy.DialError
	return errors.As(err, &dialErr)
}
