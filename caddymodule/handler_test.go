package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/caddyserver/caddy/v2"

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
