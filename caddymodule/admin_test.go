package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/podcell/podcell/caddymodule/controller"
	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/internal/fakebuild"
	"github.com/podcell/podcell/scaler/scalertest"
)

// The admin API's route table, in process: a controller on a fake
// runtime behind httptest, no Caddy and no Podman.

func testAdmin(t *testing.T, config ...controller.Declared) (*httptest.Server, *controller.Controller) {
	t.Helper()
	f := scalertest.NewFake(t)
	f.SetAutoReady(true)
	c := testController(t, f, new(fakebuild.Builder), config...)
	srv := httptest.NewServer((&adminRoutes{ctrl: func() *controller.Controller { return c }, dashboard: func() bool { return false }}).mux())
	t.Cleanup(srv.Close)
	return srv, c
}

func do(t *testing.T, srv *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// Every route answers its method, and an error as {"error": "..."} with
// the status and a message that names the field or the fix.
func TestAdminRoutes(t *testing.T) {
	srv, _ := testAdmin(t, controller.Declared{Name: "cfg", Spec: controller.ServiceSpec{Image: "localhost/cfg:1",
		Env: map[string]string{"GREETING": "hi"}, Cron: []cron.Job{{Name: "yearly", Schedule: "@yearly", Path: "/y"}}}})
	const svc = "/podcell/services/"
	ok := []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"GET", "/podcell/services", "", 200, `"name": "cfg"`},
		{"GET", svc, "", 200, `"name": "cfg"`},
		{"GET", svc + "cfg", "", 200, `"source": "config"`},
		{"PUT", svc + "api", `{"image": "localhost/api:1", "env": {"A": "1"}}`, 201, `"source": "api"`},
		{"PUT", svc + "api", `{"image": "localhost/api:2", "pause_after": "5s"}`, 200, `"image": "localhost/api:2"`},
		{"GET", svc + "api/env?reveal=true", "", 200, `"value": "1"`},
		{"GET", svc + "api/env", "", 200, `"name": "A"`},
		{"PUT", svc + "cfg/env", `{"TOKEN": "t"}`, 200, `"revision": 2`},
		{"DELETE", svc + "cfg/env/TOKEN", "", 200, `"service": "cfg"`},
		{"GET", svc + "cfg/revisions", "", 200, `"reason": "env"`},
		{"POST", svc + "api/rollback", "", 200, `"image": "localhost/api:1"`},
		{"POST", svc + "api/rollback", `{"revision": 2}`, 200, `"image": "localhost/api:2"`},
		{"GET", svc + "cfg/cron", "", 200, `"name": "yearly"`},
		{"PUT", svc + "cfg/cron/added", `{"schedule": "@daily", "path": "/d"}`, 201, `"source": "api"`},
		{"PUT", svc + "cfg/cron/added", `{"schedule": "@daily", "path": "/d2"}`, 200, `"path": "/d2"`},
		{"GET", svc + "cfg/cron/added", "", 200, `"schedule": "@daily"`},
		{"GET", svc + "cfg/cron/added/runs", "", 200, `[]`},
		{"POST", svc + "cfg/cron/added/run", "", 202, `"job": "added"`},
		{"DELETE", svc + "cfg/cron/added", "", 204, ``},
		{"GET", svc + "cfg/logs", "", 200, ``},
		{"GET", "/podcell/metrics", "", 200, `podcell_`},
		{"GET", "/podcell/events", "", 200, `[`},
		{"DELETE", svc + "api", "", 204, ``},
	}
	for _, tc := range ok {
		code, body := do(t, srv, tc.method, tc.path, tc.body)
		if code != tc.code || !strings.Contains(body, tc.says) {
			t.Errorf("%s %s %s: %d %.300s; want %d with %s", tc.method, tc.path, tc.body, code, body, tc.code, tc.says)
		}
	}
	bad := []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"PATCH", svc + "cfg/env", `{}`, 405, "env"},
		{"POST", svc + "cfg", ``, 405, "use GET, PUT"},
		{"POST", "/podcell/services", ``, 405, "use GET"},
		{"GET", svc + "cfg/rollback", ``, 405, "POST"},
		{"PUT", svc + "cfg/revisions", ``, 405, "GET"},
		{"GET", svc + "cfg/env/X", ``, 405, "DELETE"},
		{"GET", svc + "cfg/cron/yearly/run", "", 405, "POST"},
		{"POST", svc + "cfg/cron/yearly/runs", "", 405, "GET"},
		{"POST", svc + "cfg/cron", "", 405, "cron/<job>"},
		{"PATCH", svc + "cfg/cron/yearly", "", 405, "PUT"},
		{"GET", svc + "cfg/deploy", "", 405, "POST"},
		{"GET", svc + "cfg/nonsense", "", 404, `unknown action "nonsense"`},
		{"GET", "/podcell/nonsense", "", 404, "not a podcell endpoint"},
		{"GET", "/podcell/dashboard/", "", 404, "dashboard is off"},
		{"GET", svc + "nosuch", "", 404, `"nosuch"`},
		{"GET", svc + "nosuch/env", "", 404, `"nosuch"`},
		{"PUT", svc + "nosuch/env", `{"A": "1"}`, 404, `"nosuch"`},
		{"PUT", svc + "cfg/env", `{"PORT": "9"}`, 400, "PORT"},
		{"PUT", svc + "cfg/env", `{"BIG": "` + strings.Repeat("x", controller.MaxEnvValue+1) + `"}`, 413, "env BIG"},
		{"PUT", svc + "cfg/env", `{"GREETING": "changed"}`, 409, "Caddyfile"},
		{"PUT", svc + "cfg/env", `["A"]`, 400, "JSON object"},
		{"PUT", svc + "cfg/env", `{}`, 400, "names no env var"},
		{"DELETE", svc + "cfg/env/NOPE", "", 404, "NOPE"},
		{"PUT", svc + "cfg", `{"image": "x"}`, 409, "Caddyfile"},
		{"DELETE", svc + "cfg", "", 409, "Caddyfile"},
		{"PUT", svc + "Bad_Name", `{"image": "x"}`, 400, `"Bad_Name"`},
		{"PUT", svc + "newsvc", `{"image": "x", "memory_mb": 50}`, 400, "memory"},
		{"PUT", svc + "newsvc", `{"image": "x", "colour": "red"}`, 400, `"colour"`},
		{"PUT", svc + "newsvc", `{"image": "x"} {}`, 400, "one JSON value"},
		{"PUT", svc + "newsvc", `{"git": {"url": "https://example.com/a/b", "runtime": "python3.11-debian", "build_memory_mb": 65536}}`, 400, "build_memory"},
		{"PUT", svc + "newsvc", `{"git": {"url": "https://example.com/a/b", "runtime": "python3.11-debian", "build_timeout": "100h"}}`, 400, "build_timeout"},
		{"PUT", svc + "newsvc", `{"memory_mb": 256}`, 400, "image"},
		{"PUT", svc + "newsvc", `{"image": "x", "env": {"2X": "y"}}`, 400, `"2X"`},
		{"PUT", svc + "newsvc", `{"image": "x", "env": {"PODCELL_CRON_SECRET": "y"}}`, 400, "PODCELL_CRON_SECRET"},
		{"PUT", svc + "newsvc", strings.Repeat(" ", 2<<20), 413, "larger than"},
		{"POST", svc + "cfg/rollback", `{"revision": 99}`, 404, "revision 99"},
		{"POST", svc + "cfg/rollback", `{"revison": 1}`, 400, "revison"},
		{"POST", svc + "cfg/deploy", "", 409, "not a git source"},
		{"GET", svc + "cfg/builds", "", 409, "not a git source"},
		{"GET", svc + "cfg/builds/x/log", "", 400, `"x" is not a number`},
		{"PUT", svc + "cfg/cron/yearly", `{"schedule": "@daily", "path": "/x"}`, 409, "Caddyfile"},
		{"DELETE", svc + "cfg/cron/yearly", "", 409, "Caddyfile"},
		{"PUT", svc + "cfg/cron/bad", `{"schedule": "61 * * * *", "path": "/x"}`, 400, `schedule "61 * * * *"`},
		{"PUT", svc + "cfg/cron/bad", `{"schedule": "@daily", "method": "FETCH", "path": "/x"}`, 400, `method "FETCH"`},
		{"PUT", svc + "cfg/cron/bad", `{"name": "other", "schedule": "@daily", "path": "/x"}`, 400, `"other"`},
		{"PUT", svc + "cfg/cron/Bad_Name", `{"schedule": "@daily", "path": "/x"}`, 400, `"Bad_Name"`},
		{"DELETE", svc + "cfg/cron/nosuch", "", 404, `"nosuch"`},
		{"POST", svc + "cfg/cron/nosuch/run", "", 404, `"nosuch"`},
		{"GET", svc + "nosuch/logs", "", 404, ``},
	}
	for _, tc := range bad {
		code, body := do(t, srv, tc.method, tc.path, tc.body)
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
			t.Errorf("%s %s: the error is not JSON with an \"error\" message: %.200s", tc.method, tc.path, body)
		}
		if code != tc.code || !strings.Contains(e.Error, tc.says) {
			t.Errorf("%s %s %.60s: %d %.200s; want %d naming %s", tc.method, tc.path, tc.body, code, strings.TrimSpace(body), tc.code, tc.says)
		}
	}
	if code, _ := do(t, srv, "GET", svc+"newsvc", ""); code != 404 {
		t.Errorf("a rejected service was created: GET answers %d", code)
	}
}

// Without a running podcell app every route but the observability ones
// answers 503, naming the fix.
func TestAdminWithoutController(t *testing.T) {
	srv := httptest.NewServer((&adminRoutes{ctrl: func() *controller.Controller { return nil }, dashboard: func() bool { return false }}).mux())
	defer srv.Close()
	for _, p := range []string{"/podcell/services", "/podcell/services/a", "/podcell/services/a/env"} {
		if code, body := do(t, srv, "GET", p, ""); code != 503 || !strings.Contains(body, "load a config") {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	if code, _ := do(t, srv, "GET", "/podcell/metrics", ""); code != 200 {
		t.Errorf("metrics: %d", code)
	}
}

// A git service's deploy, builds and build log routes, with a fake builder.
func TestAdminDeployRoutes(t *testing.T) {
	srv, c := testAdmin(t)
	b := new(fakebuild.Builder)
	b.SetCommit(strings.Repeat("c", 40))
	if err := c.Start(controller.Settings{Builder: b}, nil); err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, srv, "PUT", "/podcell/services/app", `{"git": {"url": "https://example.com/app.git", "runtime": "python3.11-debian"}}`); code != 201 {
		t.Fatalf("put: %d %s", code, body)
	}
	code, body := do(t, srv, "POST", "/podcell/services/app/deploy", "")
	if code != 202 || !strings.Contains(body, `"log": "/podcell/services/app/builds/`) {
		t.Fatalf("deploy: %d %s", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body = do(t, srv, "GET", "/podcell/services/app/builds/1/log?follow=1", "")
		if code == 200 && strings.Contains(body, "[build 1 succeeded]") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 200 || !strings.Contains(body, "STEP 1/1") || !strings.Contains(body, "[build 1 succeeded]") {
		t.Errorf("build log: %d %s", code, body)
	}
	if code, body := do(t, srv, "GET", "/podcell/services/app/builds", ""); code != 200 || !strings.Contains(body, `"status": "succeeded"`) {
		t.Errorf("builds: %d %s", code, body)
	}
	if code, body := do(t, srv, "GET", "/podcell/services/app/builds/99/log", ""); code != 404 || !strings.Contains(body, "not kept") {
		t.Errorf("a build never made: %d %s", code, body)
	}
}

// The webhook is its own route: its POSTs reach the deployer, not an
// instance, and are not counted as the service's traffic.
func TestWebhookIsNotServiceTraffic(t *testing.T) {
	_, c := testAdmin(t)
	if _, _, err := c.Put("app", controller.ServiceSpec{Git: &controller.GitSource{URL: "https://example.com/app.git",
		Runtime: "python3.11-debian", WebhookPath: "/_hook", WebhookSecret: "k"}}); err != nil {
		t.Fatal(err)
	}
	h := &Handler{ctrl: c, gw: c.Gateway("app")}
	for _, method := range []string{"POST", "GET"} {
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, httptest.NewRequest(method, "/_hook", strings.NewReader("{}")), nil); err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"POST": 401, "GET": 405}[method]; w.Code != want {
			t.Errorf("%s /_hook: %d %s, want %d", method, w.Code, w.Body, want)
		}
	}
	var metrics strings.Builder
	c.Hub().Metrics.WritePrometheus(&metrics)
	for _, l := range strings.Split(metrics.String(), "\n") {
		if strings.HasPrefix(l, "podcell_requests_total") && strings.Contains(l, `service="app"`) && !strings.HasSuffix(l, " 0") {
			t.Errorf("a webhook request was counted: %s", l)
		}
	}
}

// Host mode finds a declared service by the first label of the host and
// answers 404 for any other host, in process.
func TestHostModeRoutes(t *testing.T) {
	_, c := testAdmin(t, controller.Declared{Name: "cfg", Spec: controller.ServiceSpec{Image: "localhost/cfg:1"}})
	h := &Handler{ctrl: c, Hosts: []string{"*.apps.localhost"}, suffixes: []string{".apps.localhost"}}
	for host, want := range map[string]string{
		"nosuch.apps.localhost": `no service "nosuch"`,
		"cfg.other.localhost":   "is not <service>.<domain>",
		"a.cfg.apps.localhost":  "is not <service>.<domain>",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		err := h.ServeHTTP(httptest.NewRecorder(), r, nil)
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) || he.StatusCode != 404 || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want 404 naming %q", host, err, want)
		}
	}
	if got := h.serviceForHost("CFG.Apps.LocalHost:8080"); got != "cfg" || c.Route(got) == nil {
		t.Errorf("serviceForHost = %q (routed: %v)", got, c.Route(got) != nil)
	}
}

// A git service that never ran is listed, with its state and its last
// build's error: it used to be left out until it ran once.
func TestAdminListsServiceWithoutRevision(t *testing.T) {
	srv, c := testAdmin(t)
	b := new(fakebuild.Builder) // no commit: builds fail
	if err := c.Start(controller.Settings{Builder: b}, nil); err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, srv, "PUT", "/podcell/services/app", `{"git": {"url": "https://example.com/app.git"}}`); code != 201 {
		t.Fatalf("put: %d %s", code, body)
	}
	var list []controller.ServiceStatus
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := do(t, srv, "GET", "/podcell/services", "")
		list = nil
		json.Unmarshal([]byte(body), &list)
		if len(list) == 1 && list[0].State == controller.StateBuildFailed || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(list) != 1 || list[0].Name != "app" || list[0].State != "build_failed" || !strings.Contains(list[0].Error, "the repository has no commit") {
		t.Fatalf("services: %+v, want app with state build_failed and the build's error", list)
	}
	// Listed, so its logs and events (which the dashboard asks for) are
	// empty, not unknown.
	for _, p := range []string{"/podcell/services/app/logs", "/podcell/events?service=app"} {
		if code, body := do(t, srv, "GET", p, ""); code != 200 {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
}

// The admin API speaks snake_case throughout: a service's instances and
// its deploy.source too, which showed Go names (ID, State, URL, RootDir).
// A PUT's git block still takes the names those answers showed (RootDir,
// BuildEnv), and root_dir; an unknown name is still refused.
func TestAdminSnakeCase(t *testing.T) {
	srv, c := testAdmin(t, controller.Declared{Name: "cfg", Spec: controller.ServiceSpec{Image: "localhost/cfg:1", MinInstances: 1}})
	b := new(fakebuild.Builder)
	b.SetCommit(strings.Repeat("e", 40))
	if err := c.Start(controller.Settings{Builder: b}, []controller.Declared{{Name: "cfg", Spec: controller.ServiceSpec{Image: "localhost/cfg:1", MinInstances: 1}}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, git string }{
		{"goname", `{"URL": "https://example.com/app.git", "RootDir": "web", "BuildEnv": {"A": "1"}}`},
		{"rootdir", `{"url": "https://example.com/app.git", "root_dir": "web", "build_env": {"A": "1"}}`},
		{"root", `{"url": "https://example.com/app.git", "root": "web", "build_env": {"A": "1"}}`},
	} {
		if code, body := do(t, srv, "PUT", "/podcell/services/"+tc.name, `{"git": `+tc.git+`}`); code != 201 {
			t.Fatalf("put %s: %d %s", tc.git, code, body)
		}
		code, body := do(t, srv, "GET", "/podcell/services/"+tc.name, "")
		var st map[string]any
		json.Unmarshal([]byte(body), &st)
		src, _ := st["deploy"].(map[string]any)["source"].(map[string]any)
		if code != 200 || src["url"] != "https://example.com/app.git" || src["root"] != "web" || src["build_env"] == nil {
			t.Errorf("%s: deploy.source %v; want url, root and build_env", tc.name, src)
		}
		for _, goName := range []string{"URL", "RootDir", "Limits", "Source"} {
			if _, ok := src[goName]; ok {
				t.Errorf("%s: deploy.source has the Go name %s: %v", tc.name, goName, src)
			}
		}
	}
	for _, bad := range []string{
		`{"git": {"url": "https://example.com/app.git", "root": "a", "root_dir": "b"}}`,
		`{"git": {"url": "https://example.com/app.git", "colour": "red"}}`,
	} {
		if code, body := do(t, srv, "PUT", "/podcell/services/bad", bad); code != 400 {
			t.Errorf("put %s: %d %s, want 400", bad, code, body)
		}
	}
	// Instances in snake_case.
	_, body := do(t, srv, "GET", "/podcell/services/cfg", "")
	var st struct {
		Instances []map[string]any `json:"instances"`
	}
	json.Unmarshal([]byte(body), &st)
	if len(st.Instances) == 0 {
		t.Fatalf("no instance: %s", body)
	}
	for _, k := range []string{"id", "name", "state", "revision", "addr", "inflight", "net"} {
		if _, ok := st.Instances[0][k]; !ok {
			t.Errorf("instance %v has no %q", st.Instances[0], k)
		}
	}
}
