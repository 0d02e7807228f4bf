package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

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

// warmService is a scaler service on the fake runtime with one ready
// instance.
func warmService(tb testing.TB) *scaler.Service {
	f := scalertest.NewFake(tb)
	f.SetAutoReady(true)
	sc, err := scaler.New(context.Background(), f, scaler.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sc.Close(context.Background()) })
	svc, err := sc.Apply(scaler.ServiceConfig{Name: "hello", Image: "localhost/hello:latest", PauseAfter: -1})
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.Try(context.Background(), func(string) error { return nil }); err != nil {
		tb.Fatal(err)
	}
	return svc
}

// tryWarm is proxy's part before Caddy's reverse proxy: an instance from
// the scaler, its address in the replacer for the proxy to dial.
func tryWarm(svc *scaler.Service, repl *caddy.Replacer) error {
	return svc.TryWait(context.Background(), func(addr string, wait scaler.Wait) error {
		repl.Set(upstreamPlaceholder, upstreams.value(addr))
		if wait.Wake != scaler.WakeNone {
			return errors.New("a warm request waited")
		}
		return nil
	})
}

// The warm path (Try, and the instance's address handed to the replacer
// as an interface value) allocates nothing.
func TestWarmPathAllocatesNothing(t *testing.T) {
	svc := warmService(t)
	repl := caddy.NewReplacer()
	if err := tryWarm(svc, repl); err != nil {
		t.Fatal(err)
	}
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
		if err := tryWarm(svc, repl); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("the warm path allocates %v times, want 0", n)
	}
}

func BenchmarkWarmPath(b *testing.B) {
	svc := warmService(b)
	repl := caddy.NewReplacer()
	b.ReportAllocs()
	for b.Loop() {
		if err := tryWarm(svc, repl); err != nil {
			b.Fatal(err)
		}
	}
}

// upstreams boxes an address once, and a full cache starts again.
func TestUpstreamValues(t *testing.T) {
	var u upstreamValues
	a := u.value("127.0.0.1:1")
	if a != "127.0.0.1:1" || u.value("127.0.0.1:1") != a {
		t.Fatalf("value = %v, want the address", a)
	}
	for i := range maxUpstreamValues + 1 {
		u.value(fmt.Sprintf("127.0.0.1:%d", 2+i))
	}
	if n := len(*u.m.Load()); n > maxUpstreamValues {
		t.Errorf("%d addresses kept, want at most %d", n, maxUpstreamValues)
	}
}

// proxyEnv is serve's request path in process: a scaler service on the
// fake runtime, whose instances answer with their own address (or wait for
// hold on /hold), and the reverse proxy proxy hands requests to.
type proxyEnv struct {
	t    *testing.T
	f    *scalertest.Fake
	svc  *scaler.Service
	ref  *serviceRef
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
	sc, err := scaler.New(context.Background(), e.f, scaler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close(context.Background()) })
	e.svc, err = sc.Apply(scaler.ServiceConfig{Name: "hello", Image: "localhost/hello:latest", Concurrency: 1, MaxInstances: 2,
		PauseAfter: -1, IdleTimeout: time.Hour, StableWindow: time.Hour, QueueTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.ref = &serviceRef{ready: make(chan struct{})}
	e.ref.set(e.svc)
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
	return rec, proxy(sw, r, e.ref, e.rp, next)
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
