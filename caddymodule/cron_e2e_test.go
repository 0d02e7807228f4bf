package caddymodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
)

// End-to-end tests of the cron lines of a podcell block: real Caddy, real
// containers, the hello app's /record endpoint keeping what it received.

// record is a request the hello app kept (cmd/hello /record).
type record struct {
	At     time.Time   `json:"at"`
	Method string      `json:"method"`
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
}

// records asks the app, as a user would, what it kept under key.
func (c *caddyProc) records(key string) []record {
	c.t.Helper()
	r := c.get("/records?key=" + key)
	if r.code != 200 {
		c.t.Fatalf("GET /records?key=%s: %d %v %s", key, r.code, r.err, r.body)
	}
	var out []record
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		c.t.Fatalf("records: %v: %s", err, r.body)
	}
	return out
}

// cronRun is a run as the admin API shows it.
type cronRun struct {
	Scheduled  time.Time     `json:"scheduled"`
	Started    time.Time     `json:"started"`
	Duration   time.Duration `json:"duration"`
	Status     string        `json:"status"`
	StatusCode int           `json:"status_code"`
	Attempts   int           `json:"attempts"`
	Error      string        `json:"error"`
	Manual     bool          `json:"manual"`
}

// runs is a job's history, oldest first (the API lists newest first).
func (c *caddyProc) runs(service, job string) []cronRun {
	c.t.Helper()
	var out []cronRun
	if code := c.adminJSON("GET", "/podcell/services/"+service+"/cron/"+job+"/runs", &out); code != 200 {
		c.t.Fatalf("runs of %s/%s: %d", service, job, code)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func countStatus(runs []cronRun, status string) int {
	n := 0
	for _, r := range runs {
		if r.Status == status {
			n++
		}
	}
	return n
}

// load replaces the running config with a Caddyfile, as `caddy reload` does.
func (c *caddyProc) load(site string) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+c.admin+"/load", strings.NewReader(c.caddyfile(globals+site)))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		c.t.Fatalf("/load: %d %s", resp.StatusCode, b)
	}
}

func (c *caddyProc) stats(service string) map[string]int64 {
	c.t.Helper()
	var st struct {
		Stats map[string]int64 `json:"stats"`
	}
	c.adminJSON("GET", "/podcell/services/"+service, &st)
	return st.Stats
}

// podcellCLI runs `caddy podcell args...` against this Caddy.
func (c *caddyProc) podcellCLI(args ...string) (string, error) {
	out, err := exec.Command(caddyBin, append(append([]string{"podcell"}, args...), "--address", c.admin)...).CombinedOutput()
	return string(out), err
}

// TestCronWakesServiceFromZero: a `@every 2s` job added to a service that
// has no instance starts one, and every call reaches the app with the
// scheduler's headers and the secret the container has in its env; an
// outside caller cannot forge those headers. A manual run, the CLI and
// the metrics see the same job.
func TestCronWakesServiceFromZero(t *testing.T) {
	e2e(t)
	site := `
http://{http} {
	podcell cronwake {
		image {image}
		max_instances 1
		pause_after 500ms
		idle_timeout 2m
%s
	}
}`
	c := startCaddy(t, fmt.Sprintf(site, ""))
	time.Sleep(time.Second)
	// A standby container may be created; none runs.
	if n := c.containers("running", "paused"); n != 0 {
		t.Fatalf("%d instances before any job or request", n)
	}
	c.load(fmt.Sprintf(site, `		cron "@every 2s" POST /record?key=wake "ping" {
			name tick
			header X-Test yes
		}`))
	loaded := time.Now()
	eventually(t, 60*time.Second, "the job did not run 4 times", func() bool {
		return countStatus(c.runs("cronwake", "tick"), "succeeded") >= 4
	})
	runs := c.runs("cronwake", "tick")
	first := runs[0]
	if first.Status != "succeeded" || first.Attempts != 1 || first.StatusCode != 200 {
		t.Fatalf("first run: %+v", first)
	}
	t.Logf("first run %s after the reload that added the job, scheduled %s, took %s (cold start included)",
		first.Started.Sub(loaded).Round(time.Millisecond), first.Scheduled.Format(time.RFC3339), first.Duration.Round(time.Millisecond))
	st := c.stats("cronwake")
	if st["cold_starts"] != 1 {
		t.Errorf("cold_starts = %d, want 1: the first call starts the instance", st["cold_starts"])
	}
	// Idle 500ms between calls 2s apart: each later call resumes it.
	if st["resumes"] < 1 {
		t.Errorf("resumes = %d: the calls did not wake the paused instance", st["resumes"])
	}
	t.Logf("instance stats after %d runs: %d cold start, %d resumes, %d pauses", len(runs), st["cold_starts"], st["resumes"], st["pauses"])

	secret := c.get("/env?name=PODCELL_CRON_SECRET").body
	if len(secret) != 64 {
		t.Fatalf("the container's PODCELL_CRON_SECRET is %q, want 64 hex digits", secret)
	}
	recs := c.records("wake")
	if len(recs) < 4 {
		t.Fatalf("the app got %d calls, the history has %d succeeded runs", len(recs), countStatus(runs, "succeeded"))
	}
	seen := map[string]bool{}
	var prev time.Time
	for i, r := range recs {
		h := r.Header
		sched, err := time.Parse(time.RFC3339, h.Get("Podcell-Cron-Scheduled"))
		if err != nil {
			t.Fatalf("call %d: Podcell-Cron-Scheduled %q: %v", i, h.Get("Podcell-Cron-Scheduled"), err)
		}
		if r.Method != "POST" || r.Body != "ping" || h.Get("Podcell-Cron") != "tick" || h.Get("Podcell-Cron-Attempt") != "1" ||
			h.Get("Podcell-Cron-Secret") != secret || h.Get("User-Agent") != "podcell-cron" || h.Get("X-Test") != "yes" ||
			h.Get("X-Forwarded-For") != "127.0.0.1" {
			t.Errorf("call %d: %s %q with headers %v", i, r.Method, r.Body, h)
		}
		if seen[h.Get("Podcell-Cron-Scheduled")] {
			t.Errorf("call %d: scheduled time %s came twice", i, sched)
		}
		seen[h.Get("Podcell-Cron-Scheduled")] = true
		// A tick skipped because the one before still ran (overlap skip)
		// leaves 4s; anything else is off the schedule.
		if gap := sched.Sub(prev); !prev.IsZero() && (gap <= 0 || gap%(2*time.Second) != 0) {
			t.Errorf("call %d scheduled %s after the one before, want 2s", i, gap)
		}
		prev = sched
		if lag := r.At.Sub(sched); i > 0 && (lag < 0 || lag > 2*time.Second) {
			t.Errorf("call %d reached the app %s after its fire time", i, lag)
		}
	}

	// Outside callers cannot pose as the scheduler.
	req, _ := http.NewRequest("GET", "http://"+c.http+"/record?key=forged", nil)
	req.Header.Set("Podcell-Cron", "tick")
	req.Header.Set("podcell-cron-secret", secret)
	req.Header.Set("Podcell-Cron-Scheduled", "2024-01-01T00:00:00Z")
	// Spellings that CGI, WSGI and PHP servers map to the same variable.
	// Set directly: Header.Set would canonicalize them away.
	req.Header["Podcell_Cron_Secret"] = []string{secret}
	req.Header["podcell.cron.attempt"] = []string{"1"}
	req.Header["PODCELL_CRON"] = []string{"tick"}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k := range c.records("forged")[0].Header {
		if n := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(k)); strings.HasPrefix(n, "podcell-cron") {
			t.Errorf("a user's %s header reached the app", k)
		}
	}

	// A manual run. Under overlap skip it is refused while a run is in
	// progress, which with 2s ticks can happen: try again.
	var triggered struct {
		Triggered time.Time `json:"triggered"`
	}
	for i := 0; ; i++ {
		code, body := c.adminDo("POST", "/podcell/services/cronwake/cron/tick/run", "")
		if code == 202 {
			json.Unmarshal([]byte(body), &triggered)
			break
		}
		if code != 409 || i == 5 {
			t.Fatalf("manual run: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var manual cronRun
	eventually(t, 10*time.Second, "the manual run is not in the history", func() bool {
		for _, r := range c.runs("cronwake", "tick") {
			if r.Manual {
				manual = r
				return true
			}
		}
		return false
	})
	if manual.Status != "succeeded" || manual.Scheduled.Sub(triggered.Triggered).Abs() > time.Second {
		t.Errorf("manual run %+v, triggered at %s", manual, triggered.Triggered)
	}
	found := false
	for _, r := range c.records("wake") {
		if r.Header.Get("Podcell-Cron-Scheduled") == manual.Scheduled.UTC().Format(time.RFC3339) && !r.At.Before(triggered.Triggered.Add(-time.Second)) {
			found = true
		}
	}
	if !found {
		t.Errorf("the app did not get the manual run (scheduled %s)", manual.Scheduled)
	}

	// The CLI and the metrics.
	out, err := c.podcellCLI("cron", "list", "cronwake")
	if err != nil || !strings.Contains(out, "tick") || !strings.Contains(out, "@every 2s") || !strings.Contains(out, "succeeded") {
		t.Errorf("cron list: %v\n%s", err, out)
	}
	out, err = c.podcellCLI("cron", "runs", "cronwake", "tick")
	if err != nil || !strings.Contains(out, "succeeded") || !strings.Contains(out, "yes") {
		t.Errorf("cron runs: %v\n%s", err, out)
	}
	if out, err = c.podcellCLI("cron", "run", "cronwake", "nosuch"); err == nil || !strings.Contains(out, `cron job "nosuch" of service cronwake does not exist`) {
		t.Errorf("cron run of a missing job: %v\n%s", err, out)
	}
	if out, err = c.podcellCLI("cron", "run", "cronwake", "tick"); err != nil && !strings.Contains(out, "still running") {
		t.Errorf("cron run: %v\n%s", err, out)
	}
	_, metrics := c.adminDo("GET", "/podcell/metrics", "")
	if !strings.Contains(metrics, `podcell_cron_runs_total{service="cronwake",job="tick",status="succeeded"}`) {
		t.Errorf("no cron metric for the job in /podcell/metrics")
	}
	if code, body := c.adminDo("PUT", "/podcell/services/cronwake/env", `{"PODCELL_CRON_SECRET": "mine"}`); code != 400 || !strings.Contains(body, "cron secret") {
		t.Errorf("setting PODCELL_CRON_SECRET through the API: %d %s, want 400", code, body)
	}
}

// TestCronRetriesOn5xx: a job whose endpoint fails twice is retried with
// backoff and succeeds on the third attempt, each attempt numbered and
// carrying the same scheduled time; a job that keeps failing gives up
// after its retries and is recorded as failed.
func TestCronRetriesOn5xx(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell cronretry {
		image {image}
		min_instances 1
		pause_after off
		cron "@every 5s" GET "/record?key=flaky&fail=2" {
			name flaky
			retries 3
			timeout 4s
		}
		cron "@every 5s" GET "/record?key=broken&fail=1000" {
			name broken
			retries 1
			timeout 4s
		}
	}
}`)
	var flaky, broken []cronRun
	eventually(t, 60*time.Second, "the jobs did not run twice", func() bool {
		flaky, broken = c.runs("cronretry", "flaky"), c.runs("cronretry", "broken")
		return len(flaky) >= 2 && len(broken) >= 1
	})
	if r := flaky[0]; r.Status != "succeeded" || r.Attempts != 3 || r.StatusCode != 200 {
		t.Errorf("flaky's first run: %+v; want succeeded after 3 attempts", r)
	} else {
		t.Logf("flaky's first run: %d attempts in %s, status %d", r.Attempts, r.Duration.Round(time.Millisecond), r.StatusCode)
	}
	if r := flaky[1]; r.Status != "succeeded" || r.Attempts != 1 {
		t.Errorf("flaky's second run: %+v; want succeeded at once", r)
	}
	if r := broken[0]; r.Status != "failed" || r.Attempts != 2 || r.StatusCode != 500 || !strings.Contains(r.Error, "HTTP 500 after 2 attempt(s)") {
		t.Errorf("broken's first run: %+v; want failed after 2 attempts", r)
	} else {
		t.Logf("broken's first run: %s after %d attempts: %s", r.Status, r.Attempts, r.Error)
	}
	recs := c.records("flaky")
	if len(recs) < 3 {
		t.Fatalf("the app got %d calls of flaky", len(recs))
	}
	var waits []string
	for i, r := range recs[:3] {
		if got := r.Header.Get("Podcell-Cron-Attempt"); got != fmt.Sprint(i+1) {
			t.Errorf("attempt %d carried Podcell-Cron-Attempt %q", i+1, got)
		}
		if r.Header.Get("Podcell-Cron-Scheduled") != recs[0].Header.Get("Podcell-Cron-Scheduled") {
			t.Errorf("attempt %d scheduled %s, the first %s", i+1, r.Header.Get("Podcell-Cron-Scheduled"), recs[0].Header.Get("Podcell-Cron-Scheduled"))
		}
		if i > 0 {
			wait := r.At.Sub(recs[i-1].At)
			waits = append(waits, wait.Round(time.Millisecond).String())
			// Exponential backoff from 1s: 1s, then 2s.
			if min := time.Duration(1<<(i-1)) * time.Second; wait < min-100*time.Millisecond || wait > min+time.Second {
				t.Errorf("attempt %d came %s after the one before, want about %s", i+1, wait, min)
			}
		}
	}
	t.Logf("waits between flaky's attempts: %s", strings.Join(waits, ", "))
	_, metrics := c.adminDo("GET", "/podcell/metrics", "")
	if !strings.Contains(metrics, `podcell_cron_runs_total{service="cronretry",job="broken",status="failed"}`) {
		t.Errorf("no failed-run metric for broken in /podcell/metrics")
	}
}

// TestCronReloadDuringRun reloads the config four times, each while a run
// is in progress: the running calls finish and are recorded as succeeded,
// no fire time reaches the app twice and none is lost.
func TestCronReloadDuringRun(t *testing.T) {
	e2e(t)
	site := `
http://{http} {
	respond /version "%d"
	podcell cronreload {
		image {image}
		min_instances 1
		max_instances 1
		pause_after off
		cron "@every 2s" GET "/record?key=reload&sleep=1200ms" {
			name slow
		}
	}
}`
	c := startCaddy(t, fmt.Sprintf(site, 0))
	eventually(t, 60*time.Second, "the job did not run", func() bool { return len(c.records("reload")) >= 1 })
	var inRun []time.Duration
	for v := 1; v <= 4; v++ {
		// Wait for a call to arrive, then reload while it sleeps.
		n := len(c.records("reload"))
		var arrived time.Time
		eventually(t, 10*time.Second, "no new call", func() bool {
			recs := c.records("reload")
			if len(recs) > n {
				arrived = recs[len(recs)-1].At
				return true
			}
			return false
		})
		time.Sleep(200 * time.Millisecond)
		c.load(fmt.Sprintf(site, v))
		inRun = append(inRun, time.Since(arrived).Round(time.Millisecond))
		if r := c.get("/version"); r.body != fmt.Sprint(v) {
			t.Fatalf("reload %d did not take: /version says %q", v, r.body)
		}
	}
	t.Logf("reloads done %v into a run of 1.2s", inRun)
	// Two more ticks after the last reload.
	n := len(c.records("reload"))
	eventually(t, 10*time.Second, "the job stopped after the reloads", func() bool { return len(c.records("reload")) >= n+2 })
	time.Sleep(1500 * time.Millisecond) // let the last call finish

	recs := c.records("reload")
	var scheds []time.Time
	count := map[string]int{}
	for _, r := range recs {
		s := r.Header.Get("Podcell-Cron-Scheduled")
		count[s]++
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatalf("Podcell-Cron-Scheduled %q: %v", s, err)
		}
		scheds = append(scheds, ts)
	}
	for s, n := range count {
		if n > 1 {
			t.Errorf("fire time %s reached the app %d times", s, n)
		}
	}
	sort.Slice(scheds, func(i, j int) bool { return scheds[i].Before(scheds[j]) })
	for i := 1; i < len(scheds); i++ {
		if d := scheds[i].Sub(scheds[i-1]); d != 2*time.Second {
			t.Errorf("fire times %s and %s are %s apart: a tick was lost", scheds[i-1].Format(time.TimeOnly), scheds[i].Format(time.TimeOnly), d)
		}
	}
	runs := c.runs("cronreload", "slow")
	for _, r := range runs {
		if r.Status != "succeeded" || r.Duration < 1200*time.Millisecond {
			t.Errorf("run scheduled %s: %s in %s (%s)", r.Scheduled.Format(time.TimeOnly), r.Status, r.Duration, r.Error)
		}
	}
	t.Logf("%d calls over %s across 4 reloads: %d distinct fire times, each 2s after the one before; %d runs recorded, %d succeeded",
		len(recs), scheds[len(scheds)-1].Sub(scheds[0]), len(count), len(runs), countStatus(runs, "succeeded"))
}

// TestCronAPIJobs: jobs added through the admin API run, are refused for
// names the config owns, survive a restart with their history, do not
// replay the ticks missed while Caddy was down, and stop when deleted.
func TestCronAPIJobs(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell cronapi {
		image {image}
		pause_after off
		cron @yearly GET /record?key=config {
			name yearly
		}
	}
}`)
	const svc = "/podcell/services/cronapi/cron/"
	code, body := c.adminDo("PUT", svc+"added", `{"schedule": "@every 2s", "method": "POST", "path": "/record?key=api", "body": "x", "header": {"Content-Type": ["text/plain"]}}`)
	if code != 201 {
		t.Fatalf("PUT job: %d %s", code, body)
	}
	eventually(t, 60*time.Second, "the API job did not run", func() bool { return countStatus(c.runs("cronapi", "added"), "succeeded") >= 2 })
	if code, body = c.adminDo("PUT", svc+"added", `{"schedule": "@every 3s", "method": "POST", "path": "/record?key=api", "body": "x"}`); code != 200 {
		t.Fatalf("PUT job again: %d %s, want 200", code, body)
	}
	cases := []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"PUT", svc + "yearly", `{"schedule": "@daily", "path": "/x"}`, 409, "Caddyfile"},
		{"DELETE", svc + "yearly", "", 409, "Caddyfile"},
		{"PUT", svc + "bad", `{"schedule": "61 * * * *", "path": "/x"}`, 400, `cron job "bad" of service cronapi: schedule "61 * * * *"`},
		{"PUT", svc + "bad", `{"schedule": "@daily", "method": "FETCH", "path": "/x"}`, 400, `method "FETCH"`},
		{"PUT", svc + "bad", `{"schedule": "@daily", "path": "/x", "tz": "Mars/Olympus"}`, 400, `tz "Mars/Olympus"`},
		{"PUT", svc + "bad", `{"schedule": "@daily", "path": "/x", "colour": "red"}`, 400, `"colour"`},
		{"PUT", svc + "bad", `{"name": "other", "schedule": "@daily", "path": "/x"}`, 400, `"other"`},
		{"PUT", svc + "Bad_Name", `{"schedule": "@daily", "path": "/x"}`, 400, `"Bad_Name"`},
		{"PUT", "/podcell/services/nosuch/cron/x", `{"schedule": "@daily", "path": "/x"}`, 404, `"nosuch"`},
		{"DELETE", svc + "nosuch", "", 404, `"nosuch"`},
		{"POST", svc + "nosuch/run", "", 404, `"nosuch"`},
		{"GET", svc + "nosuch/runs", "", 404, `"nosuch"`},
		{"GET", svc + "added/run", "", 405, "POST"},
	}
	for _, tc := range cases {
		code, body := c.adminDo(tc.method, tc.path, tc.body)
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal([]byte(body), &e)
		if code != tc.code || !strings.Contains(e.Error, tc.says) {
			t.Errorf("%s %s %s: %d %s; want %d naming %s", tc.method, tc.path, tc.body, code, strings.TrimSpace(body), tc.code, tc.says)
		}
	}
	var jobs []struct {
		Name   string     `json:"name"`
		Source string     `json:"source"`
		Next   *time.Time `json:"next"`
	}
	c.adminJSON("GET", "/podcell/services/cronapi/cron", &jobs)
	if len(jobs) != 2 || jobs[0].Name != "added" || jobs[0].Source != "api" || jobs[1].Name != "yearly" || jobs[1].Source != "config" || jobs[0].Next == nil {
		t.Fatalf("jobs: %+v", jobs)
	}

	before := c.runs("cronapi", "added")
	stopped := time.Now()
	c.stop()
	time.Sleep(10 * time.Second) // about three ticks of @every 3s
	relaunched := time.Now()
	c.launch()
	down := relaunched.Sub(stopped)
	var after []cronRun
	eventually(t, 60*time.Second, "the API job did not run after the restart", func() bool {
		after = c.runs("cronapi", "added")
		for _, r := range after {
			if r.Started.After(relaunched) && r.Status == "succeeded" {
				return true
			}
		}
		return false
	})
	kept := map[time.Time]bool{}
	for _, r := range after {
		kept[r.Scheduled] = true
	}
	for _, r := range before {
		if !kept[r.Scheduled] {
			t.Fatalf("the run scheduled %s is not in the history after the restart: %+v", r.Scheduled, after)
		}
	}
	// The ticks of the downtime: the latest runs, late, once; the ones
	// before it make one missed record. The downtime ends when the new
	// scheduler starts, which is some time after relaunched (Caddy's own
	// start): a tick in between is the downtime's too. The scheduler's
	// first run is the catch-up, at its start; every tick due by then is
	// the downtime's, and later ones run on time.
	var catchUp time.Time
	for _, r := range after {
		if r.Started.After(relaunched) && r.Status != "missed" && (catchUp.IsZero() || r.Started.Before(catchUp)) {
			catchUp = r.Started
		}
	}
	ran, missed := 0, 0
	for _, r := range after {
		if !r.Started.After(relaunched) {
			continue // the process before the restart made it
		}
		t.Logf("after %s down: %s scheduled %s, started %s: %s", down.Round(time.Second), r.Status,
			r.Scheduled.Format(time.TimeOnly), r.Started.Format(time.TimeOnly), r.Error)
		if r.Scheduled.After(catchUp) {
			continue // on time, after the catch-up
		}
		for _, b := range before {
			if b.Scheduled.Equal(r.Scheduled) {
				t.Errorf("the run scheduled %s, made before the stop, ran again after the restart", r.Scheduled.Format(time.TimeOnly))
			}
		}
		switch r.Status {
		case "missed":
			missed++
		case "succeeded", "failed":
			ran++
		}
	}
	if ran != 1 || missed > 1 {
		t.Errorf("the downtime's ticks made %d runs and %d missed records; want one run and at most one missed record", ran, missed)
	}
	if code, body = c.adminDo("DELETE", svc+"added", ""); code != 204 {
		t.Fatalf("DELETE job: %d %s", code, body)
	}
	time.Sleep(time.Second) // a run in progress finishes
	n := len(c.records("api"))
	time.Sleep(4 * time.Second)
	if m := len(c.records("api")); m != n {
		t.Errorf("the deleted job fired %d more times", m-n)
	}
	if code, _ = c.adminDo("GET", svc+"added/runs", ""); code != 404 {
		t.Errorf("runs of the deleted job: %d, want 404", code)
	}

	// A service declared through the API brings its jobs in its body.
	code, body = c.adminDo("PUT", "/podcell/services/cronapisvc", `{"image": "`+c.image+`", "pause_after": -1, "cron": [{"name": "t", "schedule": "@every 2s", "path": "/record?key=t"}]}`)
	if code != 201 {
		t.Fatalf("PUT service with a job: %d %s", code, body)
	}
	eventually(t, 60*time.Second, "the API service's job did not run", func() bool { return countStatus(c.runs("cronapisvc", "t"), "succeeded") >= 1 })
	if code, body = c.adminDo("DELETE", "/podcell/services/cronapisvc", ""); code != 204 {
		t.Fatalf("DELETE service: %d %s", code, body)
	}
	eventually(t, 60*time.Second, "the deleted service's containers stay", func() bool {
		list, err := c.rt.List(context.Background(), scaler.LabelService, "cronapisvc")
		return err == nil && len(list) == 0
	})
}
