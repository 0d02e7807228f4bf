package caddymodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
)

// adminDo sends body (if not "") to the admin API and returns the status
// and the answer.
func (c *caddyProc) adminDo(method, path, body string) (int, string) {
	c.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://"+c.admin+path, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type envList struct {
	Env []struct {
		Name   string `json:"name"`
		Source string `json:"source"`
		Value  string `json:"value"`
	} `json:"env"`
	Revision int `json:"revision"`
}

func (c *caddyProc) env(service string, reveal bool) map[string]string {
	c.t.Helper()
	path := "/podcell/services/" + service + "/env"
	if reveal {
		path += "?reveal=true"
	}
	code, body := c.adminDo("GET", path, "")
	if code != 200 {
		c.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var l envList
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		c.t.Fatal(err)
	}
	out := map[string]string{}
	for _, v := range l.Env {
		out[v.Name] = v.Source + ":" + v.Value
	}
	return out
}

// sample is one request of a steady load.
type sample struct {
	sent, got time.Time
	code      int
	body      string
	err       error
}

// TestEnvChangeUnderSteadyLoad changes a service's env twice under 100
// requests per second: no request may fail, and from the moment the first
// answer shows the new value, every request sent after it shows it too.
func TestEnvChangeUnderSteadyLoad(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell envsvc {
		image {image}
		env GREETING "from the Caddyfile"
		min_instances 1
		pause_after off
		drain_timeout 10s
	}
}`)
	eventually(t, 30*time.Second, "no instance came up", func() bool { return c.get("/").code == 200 })
	if code, body := c.adminDo("PUT", "/podcell/services/envsvc/env", `{"COLOR": "blue"}`); code != 200 {
		t.Fatalf("first env: %d %s", code, body)
	}
	eventually(t, 30*time.Second, "COLOR=blue never served", func() bool { return c.get("/env?name=COLOR").body == "blue" })

	const rps, secs = 100, 20
	var (
		mu      sync.Mutex
		samples []sample
		wg      sync.WaitGroup
	)
	type change struct {
		value string
		sent  time.Time
	}
	var changes []change
	tick := time.NewTicker(time.Second / rps)
	start := time.Now()
	for i := 0; i < rps*secs; i++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := sample{sent: time.Now()}
			r := c.get("/env?name=COLOR")
			s.got, s.code, s.body, s.err = time.Now(), r.code, r.body, r.err
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}()
		if i == rps*5 || i == rps*12 {
			value := map[int]string{rps * 5: "green", rps * 12: "red"}[i]
			ch := change{value: value, sent: time.Now()}
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, body := c.adminDo("PUT", "/podcell/services/envsvc/env", `{"COLOR": "`+value+`"}`)
				if code != 200 {
					t.Errorf("env change to %s: %d %s", value, code, body)
				}
			}()
			changes = append(changes, ch)
		}
	}
	tick.Stop()
	wg.Wait()
	t.Logf("%d requests in %s", len(samples), time.Since(start).Round(time.Millisecond))

	sort.Slice(samples, func(i, j int) bool { return samples[i].sent.Before(samples[j].sent) })
	failed := 0
	for _, s := range samples {
		if s.err != nil || s.code != 200 {
			failed++
			if failed <= 5 {
				t.Errorf("request at +%s: code %d err %v body %q", s.sent.Sub(start).Round(time.Millisecond), s.code, s.err, s.body)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed during env changes", failed, len(samples))
	}
	for i, ch := range changes {
		// The first answer with the new value marks the switch.
		var switched time.Time
		for _, s := range samples {
			if s.body == ch.value && (switched.IsZero() || s.got.Before(switched)) {
				switched = s.got
			}
		}
		if switched.IsZero() {
			t.Fatalf("change %d: no answer ever showed COLOR=%s", i+1, ch.value)
		}
		// Every request sent after the switch, until the next change, shows it.
		var until time.Time
		if i+1 < len(changes) {
			until = changes[i+1].sent
		}
		stale := 0
		for _, s := range samples {
			if s.sent.After(switched) && (until.IsZero() || s.sent.Before(until)) && s.body != ch.value {
				stale++
			}
		}
		if stale > 0 {
			t.Errorf("change %d: %d requests sent after the switch still saw the old value", i+1, stale)
		}
		lag := switched.Sub(ch.sent)
		t.Logf("change %d (COLOR=%s): new value served %s after the API call; 0 failed, 0 stale after the switch", i+1, ch.value, lag.Round(time.Millisecond))
		if lag > 5*time.Second {
			t.Errorf("change %d took %s to reach the service", i+1, lag)
		}
	}
	// The Caddyfile's env stays, and the changes are revisions.
	if got := c.get("/env?name=GREETING").body; got != "from the Caddyfile" {
		t.Errorf("GREETING = %q after env changes", got)
	}
	var revs []struct {
		Seq     int      `json:"seq"`
		Reason  string   `json:"reason"`
		Env     []string `json:"env"`
		Current bool     `json:"current"`
	}
	c.adminJSON("GET", "/podcell/services/envsvc/revisions", &revs)
	if len(revs) < 4 || revs[0].Reason != "env" || !revs[0].Current {
		t.Fatalf("revisions: %+v; want config + 3 env changes, newest current", revs)
	}

	// Roll back to the revision before: COLOR=green serves again.
	if code, body := c.adminDo("POST", "/podcell/services/envsvc/rollback", ""); code != 200 {
		t.Fatalf("rollback: %d %s", code, body)
	}
	eventually(t, 30*time.Second, "rollback did not bring COLOR=green back", func() bool { return c.get("/env?name=COLOR").body == "green" })
	if got := c.env("envsvc", true)["COLOR"]; got != "api:green" {
		t.Errorf("stored COLOR after rollback = %q", got)
	}
}

// TestAdminAPIRejectsBadInput: every bad request is a 4xx naming the
// problem, and the stored state does not change.
func TestAdminAPIRejectsBadInput(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell badinput {
		image {image}
		env GREETING hi
	}
}`)
	if code, body := c.adminDo("PUT", "/podcell/services/badinput/env", `{"KEEP": "me"}`); code != 200 {
		t.Fatalf("setup: %d %s", code, body)
	}
	before := c.env("badinput", true)
	big := strings.Repeat("x", 40<<10)
	cases := []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"PUT", "/podcell/services/badinput/env", `{"A": "1"`, 400, "body"},
		{"PUT", "/podcell/services/badinput/env", `["A"]`, 400, "JSON object"},
		{"PUT", "/podcell/services/badinput/env", `{"A": 1}`, 400, "body"},
		{"PUT", "/podcell/services/badinput/env", `{}`, 400, "names no env var"},
		{"PUT", "/podcell/services/badinput/env", `{"1BAD": "x"}`, 400, `"1BAD"`},
		{"PUT", "/podcell/services/badinput/env", `{"OK": "x", "BAD-NAME": "y"}`, 400, `"BAD-NAME"`},
		{"PUT", "/podcell/services/badinput/env", `{"PORT": "9"}`, 400, "PORT"},
		{"PUT", "/podcell/services/badinput/env", `{"BIG": "` + big + `"}`, 413, "env BIG"},
		{"PUT", "/podcell/services/badinput/env", `{"GREETING": "changed"}`, 409, "Caddyfile"},
		{"DELETE", "/podcell/services/badinput/env/NOPE", "", 404, "NOPE"},
		{"PUT", "/podcell/services/nosuch/env", `{"A": "1"}`, 404, `"nosuch"`},
		{"GET", "/podcell/services/nosuch/env", "", 404, `"nosuch"`},
		{"PUT", "/podcell/services/badinput", `{"image": "x"}`, 409, "Caddyfile"},
		{"DELETE", "/podcell/services/badinput", "", 409, "Caddyfile"},
		{"PUT", "/podcell/services/Bad_Name", `{"image": "x"}`, 400, `"Bad_Name"`},
		{"PUT", "/podcell/services/newsvc", `{"image": "x", "memory_mb": 50}`, 400, "memory"},
		{"PUT", "/podcell/services/newsvc", `{"image": "x", "colour": "red"}`, 400, `"colour"`},
		{"PUT", "/podcell/services/newsvc", `{"git": {"url": "https://example.com/a/b", "runtime": "python3.11-debian", "build_memory_mb": 65536}}`, 400, "build_memory"},
		{"PUT", "/podcell/services/newsvc", `{"git": {"url": "https://example.com/a/b", "runtime": "python3.11-debian", "build_pids": 1000000}}`, 400, "build_pids"},
		{"PUT", "/podcell/services/newsvc", `{"git": {"url": "https://example.com/a/b", "runtime": "python3.11-debian", "build_timeout": "100h"}}`, 400, "build_timeout"},
		{"PUT", "/podcell/services/newsvc", `{"memory_mb": 256}`, 400, "image"},
		{"PUT", "/podcell/services/newsvc", `{"image": "x", "env": {"2X": "y"}}`, 400, `"2X"`},
		{"POST", "/podcell/services/badinput/rollback", `{"revision": 99}`, 404, "revision 99"},
		{"POST", "/podcell/services/badinput/rollback", `{"revison": 1}`, 400, "revison"},
		{"PATCH", "/podcell/services/badinput/env", `{}`, 405, "env"},
	}
	for _, tc := range cases {
		code, body := c.adminDo(tc.method, tc.path, tc.body)
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
			t.Errorf("%s %s: the error is not JSON with an \"error\" message: %s", tc.method, tc.path, body)
		}
		if code != tc.code || !strings.Contains(e.Error, tc.says) {
			t.Errorf("%s %s %.60s: %d %s; want %d naming %s", tc.method, tc.path, tc.body, code, strings.TrimSpace(body), tc.code, tc.says)
		}
	}
	if after := c.env("badinput", true); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("env changed by rejected requests: %v, was %v", after, before)
	}
	if code, _ := c.adminDo("GET", "/podcell/services/newsvc", ""); code != 404 {
		t.Errorf("a rejected service was created: GET answers %d", code)
	}
	// Redaction: names without values unless asked.
	_, body := c.adminDo("GET", "/podcell/services/badinput/env", "")
	var listed envList
	if err := json.Unmarshal([]byte(body), &listed); err != nil || len(listed.Env) != 2 {
		t.Fatalf("env list %s: %v; want GREETING and KEEP", body, err)
	}
	for _, v := range listed.Env {
		if v.Value != "" || v.Source == "" {
			t.Errorf("env %s without ?reveal=true: value %q, source %q; want no value and a source", v.Name, v.Value, v.Source)
		}
	}
}

// TestAPIServiceInHostModeSurvivesRestart declares a service through the
// admin API, serves it at <service>.<domain>, restarts Caddy and finds it
// (and its env) still there; the store's files do not hold the env value.
func TestAPIServiceInHostModeSurvivesRestart(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://:{httpport} {
	podcell {
		hosts *.apps.localhost
	}
}`)
	get := c.getHost
	if r := get("apisvc.apps.localhost", "/"); r.code != 404 {
		t.Fatalf("before the service exists: %d %q, want 404", r.code, r.body)
	}
	secret := fmt.Sprintf("sekrit-%d", time.Now().UnixNano())
	code, body := c.adminDo("PUT", "/podcell/services/apisvc", `{"image": "`+c.image+`", "pause_after": -1, "env": {"TOKEN": "`+secret+`"}}`)
	if code != 201 {
		t.Fatalf("declare: %d %s", code, body)
	}
	if code, body = c.adminDo("PUT", "/podcell/services/apisvc", `{"image": "`+c.image+`", "pause_after": -1}`); code != 200 {
		t.Fatalf("declare again: %d %s, want 200", code, body)
	}
	if r := get("apisvc.apps.localhost:80", "/env?name=TOKEN"); r.code != 200 || r.body != secret {
		t.Fatalf("API service in host mode: %d %q", r.code, r.body)
	}
	if r := get("APISVC.Apps.Localhost", "/env?name=TOKEN"); r.code != 200 || r.body != secret {
		t.Errorf("host names are case-insensitive: %d %q", r.code, r.body)
	}
	if r := get("other.apps.localhost", "/"); r.code != 404 {
		t.Errorf("unknown service: %d, want 404", r.code)
	}
	if r := get("a.b.apps.localhost", "/"); r.code != 404 {
		t.Errorf("two labels: %d, want 404", r.code)
	}
	if r := get("apisvc.example.com", "/"); r.code != 404 {
		t.Errorf("another domain: %d, want 404", r.code)
	}

	c.restart()
	if r := get("apisvc.apps.localhost", "/env?name=TOKEN"); r.code != 200 || r.body != secret {
		t.Fatalf("after a restart: %d %q", r.code, r.body)
	}
	var st struct {
		Source string `json:"source"`
	}
	c.adminJSON("GET", "/podcell/services/apisvc", &st)
	if st.Source != "api" {
		t.Errorf("source %q, want api", st.Source)
	}
	// The env value never reaches the disk in clear (store/store_test.go
	// shows, with a control, that this search finds an unencrypted write).
	storeDir := filepath.Join(c.dir, "caddy", "podcell", "store")
	read := 0
	err := filepath.Walk(storeDir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		read++
		if strings.Contains(string(b), secret) {
			t.Errorf("%s holds the env value in clear", path)
		}
		return nil
	})
	if err != nil || read == 0 {
		t.Fatalf("reading the store's files in %s: %d read, %v", storeDir, read, err)
	}

	if code, body = c.adminDo("DELETE", "/podcell/services/apisvc", ""); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if r := get("apisvc.apps.localhost", "/"); r.code != 404 {
		t.Errorf("after delete: %d, want 404", r.code)
	}
	eventually(t, 60*time.Second, "the deleted service's containers stay", func() bool { return c.containers("running", "paused", "created", "initialized") == 0 })
}

// TestDeleteDrainsInTheBackground: a DELETE of a service with a request in
// flight and an hour of drain_timeout (settable through the API) answers
// at once; a config reload and another service's declaration go through
// while the request still runs; the request ends well, then the instance goes.
func TestDeleteDrainsInTheBackground(t *testing.T) {
	e2e(t)
	site := `
http://:{httpport} {
	podcell {
		hosts *.apps.localhost
	}
}`
	c := startCaddy(t, site)
	if code, body := c.adminDo("PUT", "/podcell/services/slowdrain", `{"image": "`+c.image+`", "pause_after": -1, "drain_timeout": "1h"}`); code != 201 {
		t.Fatalf("declare: %d %s", code, body)
	}
	slow := make(chan reply, 1)
	go func() { slow <- c.getHost("slowdrain.apps.localhost", "/sleep?d=8s") }()
	eventually(t, 30*time.Second, "the slow request in flight", func() bool {
		var st struct {
			Inflight int `json:"inflight"`
		}
		c.adminJSON("GET", "/podcell/services/slowdrain", &st)
		return st.Inflight == 1
	})

	inFlight := func(what string) {
		t.Helper()
		select {
		case r := <-slow:
			t.Fatalf("%s only after the in-flight request ended (%d %q %v)", what, r.code, r.body, r.err)
		default:
		}
	}
	if code, body := c.adminDo("DELETE", "/podcell/services/slowdrain", ""); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	inFlight("DELETE answered")
	if code, body := c.adminDo("PUT", "/podcell/services/other", `{"image": "`+c.image+`", "pause_after": -1}`); code != 201 {
		t.Fatalf("declare another service during the drain: %d %s", code, body)
	}
	inFlight("another service's PUT answered")
	c.load(site)
	inFlight("the config reload answered")

	select {
	case r := <-slow:
		if r.err != nil || r.code != 200 || !strings.HasPrefix(r.body, "slept 8s") {
			t.Fatalf("the drained request: %d %q %v, want 200 slept", r.code, r.body, r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the in-flight request never ended")
	}
	eventually(t, 60*time.Second, "the deleted service's container removed", func() bool {
		list, err := c.rt.List(context.Background(), scaler.LabelOwner, c.owner)
		if err != nil {
			t.Fatal(err)
		}
		for _, ct := range list {
			if ct.Labels[scaler.LabelService] == "slowdrain" {
				return false
			}
		}
		return true
	})
}
