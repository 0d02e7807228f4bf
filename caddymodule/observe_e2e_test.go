package caddymodule_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metric reads one sample from the Prometheus text of /podcell/metrics;
// a series that is absent fails the test.
func (c *caddyProc) metric(series string) float64 {
	c.t.Helper()
	code, body := c.adminDo("GET", "/podcell/metrics", "")
	if code != 200 {
		c.t.Fatalf("GET /podcell/metrics: %d %s", code, body)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				c.t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	c.t.Fatalf("series %s is not in /podcell/metrics", series)
	return 0
}

// TestMetricsLogsAndEventsAfterRealTraffic drives known traffic into a
// service and reads it back from the metrics, the log stream (admin API
// and CLI) and the error events.
func TestMetricsLogsAndEventsAfterRealTraffic(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell obs {
		image {image}
		pause_after off
	}
}`)
	const ok, failed = 12, 3
	for i := 0; i < ok; i++ {
		if r := c.get("/"); r.code != 200 {
			t.Fatalf("request %d: %d %v", i, r.code, r.err)
		}
	}
	for i := 0; i < failed; i++ {
		if r := c.get("/status?code=503"); r.code != 503 {
			t.Fatalf("status request: %d %v", r.code, r.err)
		}
	}
	checks := []struct {
		series string
		want   float64
	}{
		{`podcell_requests_total{service="obs",code_class="2xx"}`, ok},
		{`podcell_requests_total{service="obs",code_class="5xx"}`, failed},
		{`podcell_cold_starts_total{service="obs"}`, 1},
		{`podcell_cold_start_duration_seconds_count{service="obs"}`, 1},
		{`podcell_request_duration_seconds_count{service="obs"}`, ok + failed},
		{`podcell_instances{service="obs",state="ready"}`, 1},
	}
	for _, ch := range checks {
		if got := c.metric(ch.series); got != ch.want {
			t.Errorf("%s = %v, want %v", ch.series, got, ch.want)
		}
	}
	// No per-request label may appear: every podcell series is labelled by
	// a fixed set of names.
	code, body := c.adminDo("GET", "/podcell/metrics", "")
	if code != 200 {
		t.Fatalf("GET /podcell/metrics: %d", code)
	}
	labelRE := regexp.MustCompile(`([a-z_]+)="`)
	checked := 0
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "podcell_") {
			continue
		}
		checked++
		for _, m := range labelRE.FindAllStringSubmatch(line, -1) {
			switch m[1] {
			case "service", "code_class", "state", "direction", "result", "job", "status", "reason", "le", "vmrange":
			default:
				t.Errorf("unexpected label %q in %s", m[1], line)
			}
		}
	}

	if checked < len(checks) {
		t.Errorf("only %d podcell series to check the labels of", checked)
	}

	// Events: the 503 answers are recorded with the service.
	var events []struct {
		Kind   string `json:"kind"`
		Status int    `json:"status"`
	}
	c.adminJSON("GET", "/podcell/events?service=obs", &events)
	n5xx := 0
	for _, e := range events {
		if e.Kind == "http_5xx" && e.Status == 503 {
			n5xx++
		}
	}
	if n5xx != failed {
		t.Errorf("%d http_5xx events with status 503, want %d: %+v", n5xx, failed, events)
	}

	// Logs: follow the stream, make the app print, and see the line arrive.
	resp, err := http.Get("http://" + c.admin + "/podcell/services/obs/logs?tail=10&follow=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	sent := time.Now()
	if r := c.get("/log?msg=" + marker); r.code != 200 {
		t.Fatalf("/log: %d", r.code)
	}
	timeout := time.After(15 * time.Second)
	for found := false; !found; {
		select {
		case l, open := <-lines:
			if !open {
				t.Fatal("the log stream ended")
			}
			var line struct {
				Instance, Stream, Text string
				Time                   time.Time
			}
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatalf("log line %q: %v", l, err)
			}
			if line.Text == marker {
				found = true
				if line.Stream != "stdout" || line.Instance == "" || line.Time.IsZero() {
					t.Errorf("log line without its context: %+v", line)
				}
				t.Logf("followed log line arrived %s after the request", time.Since(sent).Round(time.Millisecond))
			}
		case <-timeout:
			t.Fatalf("the followed log stream did not show %q within 15s", marker)
		}
	}

	// The CLI prints the same lines.
	out, err := exec.Command(caddyBin, "podcell", "logs", "obs", "--address", c.admin, "--tail", "50").CombinedOutput()
	if err != nil || !strings.Contains(string(out), marker) || !strings.Contains(string(out), "hello listening") {
		t.Errorf("caddy podcell logs: %v\n%s", err, out)
	}
}

// TestInstanceExitLosesNoRequest: an instance exits under a steady trickle
// of requests. Requests that reach it between its exit and Podman's event
// find its port closed; nothing reached the app, so the gateway gives them
// to another instance instead of answering 502.
func TestInstanceExitLosesNoRequest(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell exiting {
		image {image}
		pause_after off
	}
}`)
	if r := c.get("/"); r.code != 200 {
		t.Fatalf("first request: %d %v", r.code, r.err)
	}
	const workers, each = 4, 60
	codes := make(chan int, workers*each)
	done := make(chan struct{})
	for w := 0; w < workers; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < each; i++ {
				codes <- c.get("/").code
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if r := c.get("/exit?code=3"); r.code != 200 {
		t.Fatalf("/exit: %d %v", r.code, r.err)
	}
	for w := 0; w < workers; w++ {
		<-done
	}
	close(codes)
	bad := map[int]int{}
	n := 0
	for code := range codes {
		n++
		if code != 200 {
			bad[code]++
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d requests around an instance's exit; answers other than 200: %v", n, bad)
	}
	// The window was hit: some request found the port closed and moved on.
	if !strings.Contains(c.logs(), "instance refused a connection") {
		t.Errorf("no request met the exited instance's closed port, so the retry was not exercised")
	}
	if got := c.metric(`podcell_instance_crashes_total{service="exiting"}`); got != 1 {
		t.Errorf("crashes = %v, want the exit recorded once", got)
	}
	t.Logf("%d requests around an instance's exit, all 200", n)
}
