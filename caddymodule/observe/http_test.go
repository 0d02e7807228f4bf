package observe

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestServer(t *testing.T, h *Hub) *httptest.Server {
	t.Helper()
	hubs := func() []*Hub { return []*Hub{h} }
	mux := http.NewServeMux()
	mux.Handle("/podcell/metrics", MetricsHandler(hubs))
	mux.Handle("/podcell/services/", LogsHandler(hubs))
	mux.Handle("/podcell/events", EventsHandler(hubs))
	// Wrapped as Caddy's admin API wraps them, so a follow that flushes
	// only a plain http.Flusher would hang here as it does there.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(adminWriter{w}, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// adminWriter wraps a ResponseWriter like Caddy's admin API does: it has
// no Flush of its own, only Unwrap.
type adminWriter struct{ http.ResponseWriter }

func (w adminWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestMetricsEndpoint(t *testing.T) {
	h := NewHub(nil)
	h.RequestDone("web", 200, time.Millisecond, "")
	srv := newTestServer(t, h)
	resp, body := get(t, srv.URL+"/podcell/metrics")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("%s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, `podcell_requests_total{service="web",code_class="2xx"} 1`) {
		t.Errorf("metrics lack the request:\n%s", body)
	}
	if resp, _ := http.Post(srv.URL+"/podcell/metrics", "text/plain", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s, want 405", resp.Status)
	}
}

func TestLogsEndpoint(t *testing.T) {
	h := NewHub(nil)
	for _, text := range []string{"one", "two", "three"} {
		h.Logs.Add(Line{Time: time.Now(), Service: "web", Instance: "abc", Stream: "stdout", Text: text})
	}
	srv := newTestServer(t, h)

	resp, body := get(t, srv.URL+"/podcell/services/web/logs?tail=2")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%s, Content-Type %q: %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		var l Line
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, l.Text)
	}
	if strings.Join(got, ",") != "two,three" {
		t.Errorf("tail=2 gave %q, want the last two lines", got)
	}
	if resp, _ := get(t, srv.URL+"/podcell/services/nope/logs"); resp.StatusCode != 404 {
		t.Errorf("logs of an unknown service: %s, want 404", resp.Status)
	}
	if resp, _ := get(t, srv.URL+"/podcell/services/web/logs?tail=x"); resp.StatusCode != 400 {
		t.Errorf("tail=x: %s, want 400", resp.Status)
	}
}

func TestLogsEndpointFollows(t *testing.T) {
	h := NewHub(nil)
	h.Logs.Add(Line{Service: "web", Text: "old"})
	srv := newTestServer(t, h)
	// A timeout, so a follow that never flushes fails instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/podcell/services/web/logs?follow=1&tail=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() Line {
		t.Helper()
		select {
		case s, ok := <-lines:
			if !ok {
				t.Fatal("the follow ended")
			}
			var l Line
			if err := json.Unmarshal([]byte(s), &l); err != nil {
				t.Fatalf("line %q: %v", s, err)
			}
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no line while following")
			return Line{}
		}
	}
	if l := next(); l.Text != "old" {
		t.Errorf("first line %q, want the kept one", l.Text)
	}
	h.Logs.Add(Line{Service: "web", Text: "live"})
	if l := next(); l.Text != "live" {
		t.Errorf("followed %q, want the new line", l.Text)
	}

	// The handler lets go of its subscription when the client leaves.
	cancel()
	waitUntil(t, "the follower to go", func() bool {
		h.Logs.mu.Lock()
		defer h.Logs.mu.Unlock()
		return len(h.Logs.services["web"].followers) == 0
	})
}

func TestEventsEndpoint(t *testing.T) {
	h := NewHub(nil)
	h.Logs.Add(Line{Service: "quiet", Text: "known by its output"})
	h.RequestDone("web", 503, time.Millisecond, "queue full")
	h.Events.Add(Event{Service: "api", Kind: KindCrash, Message: "exited"})
	srv := newTestServer(t, h)

	var evs []Event
	resp, body := get(t, srv.URL+"/podcell/events?service=web")
	if err := json.Unmarshal([]byte(body), &evs); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %q: %v", resp.Status, body, err)
	}
	if len(evs) != 1 || evs[0].Kind != KindHTTP5xx || evs[0].Status != 503 || evs[0].Message != "queue full" {
		t.Errorf("web's events %+v, want the 503", evs)
	}
	_, body = get(t, srv.URL+"/podcell/events")
	if err := json.Unmarshal([]byte(body), &evs); err != nil || len(evs) != 2 {
		t.Errorf("all events %q, want two", body)
	}
	if _, body := get(t, srv.URL+"/podcell/events?service=quiet"); strings.TrimSpace(body) != "[]" {
		t.Errorf("events of a service without any: %q, want []", body)
	}
	if resp, _ := get(t, srv.URL+"/podcell/events?service=nope"); resp.StatusCode != 404 {
		t.Errorf("events of an unknown service: %s, want 404", resp.Status)
	}
}
