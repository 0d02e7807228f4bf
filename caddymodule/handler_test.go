package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/podcell/podcell/caddymodule/controller"
	"github.com/podcell/podcell/caddymodule/internal/fakebuild"
	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

func TestIsCronHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"Podcell-Cron":           true,
		"Podcell-Cron-Secret":    true,
		"podcell-cron-secret":    true,
		"Podcell_Cron_Secret":    true,
		"PODCELL_CRON_SCHEDULED": true,
		"podcell.cron.attempt":   true,
		"Podcell Cron":           true,
		"Podcell-Cro":            false,
		"Podcell-Cronx":          true, // a prefix, as the scheduler's names are
		"PodcellCron":            false,
		"Podcell-Crone":          true,
		"Podcell0Cron":           false,
		"X-Podcell-Cron":         false,
		"Podcell-Cold-Start":     false,
		"":                       false,
	} {
		if got := isCronHeader(name); got != want {
			t.Errorf("isCronHeader(%q) = %v, want %v", name, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { isCronHeader("Podcell_Cron_Secret") }); n != 0 {
		t.Errorf("isCronHeader allocates %v times", n)
	}
}

// testController is a started controller on the fake runtime f, with
// config's services, in a data dir of its own.
func testController(tb testing.TB, f scaler.Runtime, b controller.Builder, config ...controller.Declared) *controller.Controller {
	tb.Helper()
	dir := tb.TempDir()
	key, err := store.LoadKey(store.KeySource{}, dir, filepath.Join(dir, "store"))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := controller.New(controller.Options{DataDir: dir, Key: key, Runtime: f, Scaler: scaler.Options{Owner: "podcelltest"}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	if err := c.Start(controller.Settings{Builder: b}, config); err != nil {
		tb.Fatal(err)
	}
	return c
}

// warmGateway is the gateway of a service on the fake runtime with one
// ready instance.
func warmGateway(tb testing.TB) *controller.Gateway {
	f := scalertest.NewFake(tb)
	f.SetAutoReady(true)
	c := testController(tb, f, nil, controller.Declared{Name: "hello", Spec: controller.ServiceSpec{Image: "localhost/hello:latest", PauseAfter: -1}})
	gw := c.Route("hello")
	if err := gw.Try(context.Background(), func(controller.Attempt) error { return nil }); err != nil {
		tb.Fatal(err)
	}
	return gw
}

// tryWarm is proxy's part before Caddy's reverse proxy: an instance from
// the gateway, its address in the replacer for the proxy to dial.
func tryWarm(gw *controller.Gateway, repl *caddy.Replacer) error {
	return gw.Try(context.Background(), func(a controller.Attempt) error {
		repl.Set(upstreamPlaceholder, a.Upstream)
		if a.Woke {
			return errors.New("a warm request waited")
		}
		return nil
	})
}

// The warm path (Try, and the instance's address handed to the replacer
// as an interface value) allocates nothing.
func TestWarmPathAllocatesNothing(t *testing.T) {
	gw := warmGateway(t)
	repl := caddy.NewReplacer()
	if err := tryWarm(gw, repl); err != nil {
		t.Fatal(err)
	}
	svc, _ := gw.Service(context.Background())
	var ready []string
	for _, i := range svc.Snapshot().Instances {
		if i.State == "ready" {
			ready = append(ready, i.Addr)
		}
	}
	if v, _ := repl.Get(upstreamPlaceholder); len(ready) != 1 || v != ready[0] {
		t.Fatalf("upstream %v, want the ready instance's address (ready: %v)", v, ready)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if err := tryWarm(gw, repl); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("the warm path allocates %v times, want 0", n)
	}
}

func BenchmarkWarmPath(b *testing.B) {
	gw := warmGateway(b)
	repl := caddy.NewReplacer()
	b.ReportAllocs()
	for b.Loop() {
		if err := tryWarm(gw, repl); err != nil {
			b.Fatal(err)
		}
	}
}

// proxyEnv is serve's request path in process: a service on the fake
// runtime, whose instances answer with their own address (or wait for
// hold on /hold), and the reverse proxy proxy hands requests to.
type proxyEnv struct {
	t    *testing.T
	f    *scalertest.Fake
	svc  *scaler.Service
	gw   *controller.Gateway
	rp   *reverseproxy.Handler
	hold chan struct{}
}

func newProxyEnv(t *testing.T) *proxyEnv {
	e := &proxyEnv{t: t, f: scalertest.NewFake(t), hold: make(chan struct{})}
	e.f.SetAutoReady(true)
	e.f.SetHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-e.hold
		}
		io.WriteString(w, r.Context().Value(http.LocalAddrContextKey).(net.Addr).String())
	}))
	c := testController(t, e.f, nil, controller.Declared{Name: "hello", Spec: controller.ServiceSpec{Image: "localhost/hello:latest",
		Concurrency: 1, MaxInstances: 2, PauseAfter: -1, IdleTimeout: controller.Duration(time.Hour),
		StableWindow: controller.Duration(time.Hour), QueueTimeout: controller.Duration(5 * time.Second)}})
	e.gw = c.Route("hello")
	e.svc = c.Scaler().Service("hello")
	// The reverse proxy provisions in a running config (it loads the
	// events app): an empty one, in process, with no admin endpoint.
	persist := false
	if err := caddy.Run(&caddy.Config{Admin: &caddy.AdminConfig{Disabled: true, Config: &caddy.ConfigSettings{Persist: &persist}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caddy.Stop() })
	e.rp = newProxy(0)
	if err := e.rp.Provision(caddy.ActiveContext()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rp.Cleanup() })
	return e
}

// get sends a request down proxy as Caddy's server would.
func (e *proxyEnv) get(path string) (*httptest.ResponseRecorder, error) {
	rec := httptest.NewRecorder()
	r := caddyhttp.PrepareRequest(httptest.NewRequest("GET", path, nil), caddy.NewReplacer(), rec, &caddyhttp.Server{})
	sw := &statusWriter{}
	sw.ResponseWriter = rec
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	return rec, proxy(sw, r, e.gw, e.rp, next)
}

func (e *proxyEnv) ready() []string {
	var addrs []string
	for _, i := range e.svc.Snapshot().Instances {
		if i.State == "ready" {
			addrs = append(addrs, i.Addr)
		}
	}
	return addrs
}

// An instance that refuses the connection (its app died, Podman's event
// not yet in) costs the request nothing: the scaler hands it to another
// instance, started for it, and the refusing one takes no more requests.
// A second refusal is the answer (502), and that instance stays in service,
// as the handler had it before Service.Try.
func TestProxyRetriesRefusedConnectionOnce(t *testing.T) {
	e := newProxyEnv(t)
	rec, err := e.get("/")
	if err != nil || rec.Code != 200 || rec.Header().Get("Podcell-Cold-Start") == "" {
		t.Fatalf("first request: %d %v, Podcell-Cold-Start %q; want 200 after a cold start", rec.Code, err, rec.Header().Get("Podcell-Cold-Start"))
	}
	first := rec.Body.String()
	if rec, err = e.get("/"); err != nil || rec.Body.String() != first || rec.Header().Get("Podcell-Cold-Start") != "" {
		t.Fatalf("warm request: %d %q %v; want an answer from %s without a cold start", rec.Code, rec.Body, err, first)
	}
	ids := e.f.StartedIDs()
	e.f.Refuse(ids[0])
	rec, err = e.get("/")
	if err != nil || rec.Code != 200 || rec.Body.String() == first || rec.Header().Get("Podcell-Cold-Start") == "" {
		t.Fatalf("request to a refusing instance: %d %q %v; want 200 from a new instance started for it", rec.Code, rec.Body, err)
	}
	if r := e.ready(); len(r) != 1 || r[0] == first {
		t.Fatalf("ready instances %v; want only the new one, not %s", r, first)
	}

	// Two ready instances, both refusing.
	done := make(chan error, 2)
	for range 2 {
		go func() { _, err := e.get("/hold"); done <- err }()
	}
	scalertest.Eventually(t, 5*time.Second, "two instances busy", func() bool {
		s := e.svc.Snapshot()
		return s.Inflight == 2 && s.Count("ready") == 2
	})
	close(e.hold)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	ready := e.ready()
	for _, addr := range ready {
		for _, id := range e.f.StartedIDs() {
			if e.f.Addr(id) == addr {
				e.f.Refuse(id)
			}
		}
	}
	rec, err = e.get("/")
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusBadGateway || rec.Body.Len() != 0 {
		t.Fatalf("refused twice: %v, body %q; want the proxy's 502 and nothing written", err, rec.Body)
	}
	if r := e.ready(); len(r) != 1 {
		t.Fatalf("ready instances %v after two refusals, want one: the first out of service, the second kept", r)
	}
	if s := e.svc.Snapshot(); s.Inflight != 0 {
		t.Fatalf("%d requests in flight after they all ended", s.Inflight)
	}
}

// An instance that resets the connection before answering (an app that
// exits resets what waits in its listen queue) costs a GET nothing: it goes
// to another instance, once, as a refused one does. A request with a body
// is not sent twice: its answer is the proxy's 502.
func TestProxyRetriesResetGetOnce(t *testing.T) {
	e := newProxyEnv(t)
	var resetting atomic.Value // the address whose connections are reset
	resetting.Store("")
	e.f.SetHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
		if local == resetting.Load().(string) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.(*net.TCPConn).SetLinger(0) // close sends RST
			conn.Close()
			return
		}
		io.WriteString(w, local)
	}))
	rec, err := e.get("/")
	if err != nil || rec.Code != 200 {
		t.Fatalf("first request: %d %v", rec.Code, err)
	}
	first := rec.Body.String()
	resetting.Store(first)
	if rec, err = e.get("/"); err != nil || rec.Code != 200 || rec.Body.String() == first {
		t.Fatalf("GET to a resetting instance: %d %q %v; want 200 from another instance", rec.Code, rec.Body, err)
	}
	if r := e.ready(); len(r) != 1 || r[0] == first {
		t.Fatalf("ready instances %v; want only the new one, not %s", r, first)
	}

	second := e.ready()[0]
	resetting.Store(second)
	rec = httptest.NewRecorder()
	r := caddyhttp.PrepareRequest(httptest.NewRequest("POST", "/", strings.NewReader("x")), caddy.NewReplacer(), rec, &caddyhttp.Server{})
	sw := &statusWriter{}
	sw.ResponseWriter = rec
	err = proxy(sw, r, e.gw, e.rp, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusBadGateway {
		t.Fatalf("POST to a resetting instance: %v; want the proxy's 502, not a second send", err)
	}
	if r := e.ready(); len(r) != 1 || r[0] != second {
		t.Fatalf("ready instances %v after a POST's reset; want %s kept", r, second)
	}
}

// serverOf is the HTTP server of an adapted Caddyfile, as Caddy decodes
// it: its error routes are what answerPlain reads.
func serverOf(t *testing.T, caddyfile string) *caddyhttp.Server {
	t.Helper()
	cfg, err := adapt(t, caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	servers := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)
	for _, v := range servers {
		b, _ := json.Marshal(v)
		srv := new(caddyhttp.Server)
		if err := json.Unmarshal(b, srv); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	t.Fatal("no server")
	return nil
}

// A failure the handler answers says what happened in a one-line
// text/plain body (Caddy would send an empty one), unless the site has
// handle_errors: then the error goes there, its message the same line.
// The proxy's own errors, which name the instance's internal address,
// are answered with a line that does not.
func TestFailureAnswersSayWhatHappened(t *testing.T) {
	b := new(fakebuild.Builder) // no commit: builds fail
	f := scalertest.NewFake(t)
	f.SetAutoReady(true)
	c := testController(t, f, b, controller.Declared{Name: "app", Spec: controller.ServiceSpec{
		Git: &controller.GitSource{URL: "https://example.com/app.git", Ref: "main"}}})
	scalertest.Eventually(t, 10*time.Second, "the first build fails", func() bool {
		builds, _ := c.Builds("app")
		return len(builds) == 1 && builds[0].Status == "failed"
	})
	gw := c.Route("app")
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	send := func(srv *caddyhttp.Server) (*httptest.ResponseRecorder, error) {
		rec := httptest.NewRecorder()
		r := caddyhttp.PrepareRequest(httptest.NewRequest("GET", "/", nil), caddy.NewReplacer(), rec, srv)
		return rec, serve(rec, r, gw, nil, next, zap.NewNop())
	}
	const site = "http://localhost {\n\tpodcell app {\n\t\tgit https://example.com/app.git main\n\t}\n%s}\n"
	const want = "service app: build failed: the repository has no commit; see caddy podcell builds app\n"

	rec, err := send(serverOf(t, fmt.Sprintf(site, "")))
	if err != nil || rec.Code != 503 || rec.Body.String() != want || rec.Header().Get("Retry-After") != "30" ||
		rec.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("without handle_errors: %v, %d %q %v; want 503 with the line %q", err, rec.Code, rec.Body, rec.Header(), want)
	}

	srv := serverOf(t, fmt.Sprintf(site, "\thandle_errors {\n\t\trespond \"{err.status_code}: {err.message}\"\n\t}\n"))
	if srv.Errors == nil || len(srv.Errors.Routes) == 0 {
		t.Fatal("handle_errors made no error routes")
	}
	rec, err = send(srv)
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 503 || he.Err.Error()+"\n" != want || rec.Body.Len() != 0 || rec.Header().Get("Retry-After") != "30" {
		t.Errorf("with handle_errors: %v, body %q, Retry-After %q; want the error for the error routes, nothing written", err, rec.Body, rec.Header().Get("Retry-After"))
	}

	// The proxy's failure to reach an instance.
	rec = httptest.NewRecorder()
	r := caddyhttp.PrepareRequest(httptest.NewRequest("GET", "/", nil), caddy.NewReplacer(), rec, &caddyhttp.Server{})
	proxyErr := caddyhttp.Error(http.StatusBadGateway, reverseproxy.NewDialError(errors.New("dial tcp 10.88.0.7:8080: connect: connection refused")))
	if !answerPlain(rec, r, "app", http.StatusBadGateway, proxyErr) || rec.Code != 502 ||
		strings.Contains(rec.Body.String(), "10.88") || !strings.Contains(rec.Body.String(), "caddy podcell logs app") {
		t.Errorf("proxy error: %d %q; want 502 pointing at the logs, no internal address", rec.Code, rec.Body)
	}
	// Not a server failure: Caddy answers it.
	if answerPlain(httptest.NewRecorder(), r, "app", 499, context.Canceled) {
		t.Error("a 499 was answered")
	}
}
