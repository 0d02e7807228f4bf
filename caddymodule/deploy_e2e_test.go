package caddymodule_test

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gitRepo is a repository served over HTTP by git's http-backend, as GitHub
// serves one, from the test itself.
type gitRepo struct {
	t    *testing.T
	work string
	url  string
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is needed to serve test repositories: %v", err)
	}
	root := t.TempDir()
	g := &gitRepo{t: t, work: filepath.Join(root, "work")}
	g.git(root, "init", "-q", "--bare", "-b", "main", "app.git")
	g.git(root, "init", "-q", "-b", "main", "work")
	backend, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	h := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(backend)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	g.url = srv.URL + "/app.git"
	return g
}

func (g *gitRepo) git(dir string, args ...string) {
	g.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		g.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// commit writes files and pushes them to main.
func (g *gitRepo) commit(msg string, files map[string]string) {
	g.t.Helper()
	for name, content := range files {
		p := filepath.Join(g.work, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			g.t.Fatal(err)
		}
	}
	g.git(g.work, "add", "-A")
	g.git(g.work, "commit", "-q", "-m", msg)
	g.git(g.work, "push", "-q", filepath.Join(filepath.Dir(g.work), "app.git"), "main")
}

const pyApp = `import http.server, os
MSG = open(os.path.join(os.path.dirname(__file__), "message.txt")).read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(MSG.encode())
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
`

func (c *caddyProc) adminJSON(method, path string, v any) int {
	c.t.Helper()
	req, _ := http.NewRequest(method, "http://"+c.admin+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

type deployState struct {
	Deploy struct {
		Current *struct {
			ID     int    `json:"id"`
			Commit string `json:"commit"`
		} `json:"current"`
		Builds []struct {
			ID      int    `json:"id"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Trigger string `json:"trigger"`
		} `json:"builds"`
	} `json:"deploy"`
}

func (c *caddyProc) buildStatus(service string, id int) (status, reason string) {
	var st deployState
	c.adminJSON("GET", "/podcell/services/"+service, &st)
	for _, b := range st.Deploy.Builds {
		if b.ID == id {
			return b.Status, b.Reason
		}
	}
	return "", ""
}

// waitFirstBuild waits until service's first build ends (fatal if it
// failed): until then its requests answer 503 "building" at once.
func (c *caddyProc) waitFirstBuild(service string) {
	c.t.Helper()
	eventually(c.t, 5*time.Minute, service+"'s first build to end", func() bool {
		st, reason := c.buildStatus(service, 1)
		if st == "failed" {
			c.t.Fatalf("%s's first build failed: %s", service, reason)
		}
		return st == "succeeded"
	})
}

// needPythonRuntime stops the test unless the local Python runtime image,
// which git services here build on, exists.
func needPythonRuntime(t *testing.T) {
	t.Helper()
	if _, err := exec.Command("podman", "image", "exists", "localhost/podcell-runtime:python3.11-debian").CombinedOutput(); err != nil {
		t.Fatalf("the local Python runtime image is missing: run make base-images")
	}
}

// startPyApp serves pyApp (v1) from a test repository as the git service
// pyapp, built on the local Python runtime image.
func startPyApp(t *testing.T, opts ...option) (*caddyProc, *gitRepo) {
	t.Helper()
	needPythonRuntime(t)
	repo := newGitRepo(t)
	repo.commit("v1", map[string]string{"app.py": pyApp, "message.txt": "v1", "requirements.txt": "# stdlib only\n"})
	opts = append([]option{withGlobal("runtime_image python3.11-debian localhost/podcell-runtime:python3.11-debian")}, opts...)
	c := startCaddy(t, strings.ReplaceAll(`
http://{http} {
	podcell pyapp {
		git REPO main
		runtime python3.11-debian
		start "python3 app.py"
		memory 256MB
		pause_after off
		queue_timeout 2m
	}
}`, "REPO", repo.url)+"\n", opts...)
	return c, repo
}

func TestDeployFromGit(t *testing.T) {
	e2e(t)
	c, repo := startPyApp(t)

	// The first build deploys by itself; until it serves, requests answer
	// 503 "building" at once.
	c.waitFirstBuild("pyapp")
	first := c.get("/")
	if first.code != 200 || first.body != "v1" {
		t.Fatalf("first request: %d %q", first.code, first.body)
	}

	// Steady load while new code deploys: no request may fail.
	var sent, failed atomic.Int64
	var last atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			sent.Add(1)
			r := c.get("/")
			if r.code != 200 {
				failed.Add(1)
				continue
			}
			last.Store(r.body)
		}
	}()
	repo.commit("v2", map[string]string{"message.txt": "v2"})
	var dep struct {
		Build int    `json:"build"`
		Log   string `json:"log"`
	}
	if code := c.adminJSON("POST", "/podcell/services/pyapp/deploy", &dep); code != http.StatusAccepted {
		t.Fatalf("deploy: %d", code)
	}
	// The log streams while the build runs and ends with its outcome.
	resp, err := http.Get("http://" + c.admin + dep.Log + "?follow=1")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	resp.Body.Close()
	if len(lines) < 5 || lines[len(lines)-1] != fmt.Sprintf("[build %d succeeded]", dep.Build) {
		t.Fatalf("build log (%d lines) ends with %q", len(lines), lines[len(lines)-1:])
	}
	if !strings.Contains(strings.Join(lines, "\n"), "Using cache") {
		t.Errorf("the rebuild of a source-only change reused no cached layer")
	}
	eventually(t, time.Minute, "responses did not switch to v2", func() bool { return last.Load() == "v2" })

	// A broken build leaves v2 serving.
	repo.commit("broken", map[string]string{"requirements.txt": "this-package-does-not-exist==1.0\n"})
	c.adminJSON("POST", "/podcell/services/pyapp/deploy", &dep)
	eventually(t, 3*time.Minute, "the broken build did not finish", func() bool {
		st, _ := c.buildStatus("pyapp", dep.Build)
		return st == "failed" || st == "succeeded"
	})
	st, reason := c.buildStatus("pyapp", dep.Build)
	if st != "failed" || !strings.Contains(reason, "STEP") {
		t.Errorf("broken build: %s %q, want failed naming the step", st, reason)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if r := c.get("/"); r.code != 200 || r.body != "v2" {
		t.Errorf("after the failed build: %d %q, want v2 still serving", r.code, r.body)
	}
	t.Logf("%d requests during a deploy and a failed build, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed", failed.Load())
	}

	// The CLI shows the same builds.
	out, err := exec.Command(caddyBin, "podcell", "builds", "pyapp", "--address", c.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "succeeded") || !strings.Contains(string(out), "failed") {
		t.Errorf("caddy podcell builds: %v\n%s", err, out)
	}

	// The build history and its logs outlive a restart; new builds number on.
	failedID := dep.Build
	c.restart()
	// The last good build serves at once, while the (broken) head builds.
	if r := c.get("/"); r.code != 200 || r.body != "v2" {
		t.Errorf("right after a restart: %d %q; want the last good build (v2) serving", r.code, r.body)
	}
	st, reason = c.buildStatus("pyapp", failedID)
	if st != "failed" || !strings.Contains(reason, "STEP") {
		t.Errorf("after a restart, build %d: %q %q; want the failed build kept", failedID, st, reason)
	}
	code, body := c.adminDo("GET", fmt.Sprintf("/podcell/services/pyapp/builds/%d/log", failedID), "")
	if code != 200 || !strings.Contains(body, fmt.Sprintf("[build %d failed]", failedID)) {
		t.Errorf("after a restart, the failed build's log: %d, ends %q", code, tail(body, 2))
	}
	// (The branch's head is the broken commit, so this build fails too.)
	eventually(t, 3*time.Minute, "no build after the restart", func() bool {
		st, _ := c.buildStatus("pyapp", failedID+1)
		return st == "failed"
	})
}

const nodeServer = `const http = require("http");
const fs = require("fs");
const msg = fs.readFileSync(__dirname + "/message.txt", "utf8").trim();
http.createServer((req, res) => res.end(msg)).listen(Number(process.env.PORT));
`

func TestDeployNodeByPollAndWebhook(t *testing.T) {
	e2e(t)
	if _, err := exec.Command("podman", "image", "exists", "localhost/podcell-runtime:node20-debian").CombinedOutput(); err != nil {
		t.Fatalf("the local Node runtime image is missing: run make base-images")
	}
	// The webhook secret comes from Caddy's environment, not the config.
	hookSecret := fmt.Sprintf("hook-%d", time.Now().UnixNano())
	t.Setenv("PODCELL_E2E_HOOK", hookSecret)
	repo := newGitRepo(t)
	repo.commit("n1", map[string]string{
		"server.js":         nodeServer,
		"message.txt":       "n1",
		"package.json":      `{"name":"app","version":"1.0.0","scripts":{"start":"node server.js"}}`,
		"package-lock.json": `{"name":"app","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{"":{"name":"app","version":"1.0.0"}}}`,
	})
	c := startCaddy(t, strings.ReplaceAll(`
http://{http} {
	podcell nodeapp {
		git REPO main
		runtime node20-debian
		auto_deploy 2s
		webhook /_hook {env.PODCELL_E2E_HOOK}
		pause_after off
		queue_timeout 2m
	}
}`, "REPO", repo.url)+"\n", withGlobal("runtime_image node20-debian localhost/podcell-runtime:node20-debian"))

	c.waitFirstBuild("nodeapp")
	if r := c.get("/"); r.code != 200 || r.body != "n1" {
		t.Fatalf("first request: %d %q", r.code, r.body)
	}
	// A push is picked up by polling.
	repo.commit("n2", map[string]string{"message.txt": "n2"})
	eventually(t, 2*time.Minute, "polling did not deploy the new commit", func() bool { return c.get("/").body == "n2" })

	// A webhook with a wrong signature is refused. Of the signed ones, only
	// a push to main deploys, and only once per delivery: other events,
	// pushes elsewhere and redeliveries are acknowledged and build nothing.
	hook := func(secret, event, delivery, body string) (int, string) {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(body))
		req, _ := http.NewRequest("POST", "http://"+c.http+"/_hook", strings.NewReader(body))
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", delivery)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	type buildInfo struct {
		Trigger string `json:"trigger"`
		Status  string `json:"status"`
	}
	builds := func() []buildInfo {
		var list []buildInfo
		if code := c.adminJSON("GET", "/podcell/services/nodeapp/builds", &list); code != 200 {
			t.Fatalf("GET builds: %d", code)
		}
		return list
	}
	before := len(builds())
	push := `{"ref":"refs/heads/main","repository":{"default_branch":"main"}}`
	if code, _ := hook("s3cret", "push", "d-0", push); code != http.StatusUnauthorized {
		t.Errorf("webhook signed with the config's placeholder text instead of the secret: %d, want 401", code)
	}
	for _, h := range []struct{ event, body string }{
		{"star", `{"action":"created","ref":"refs/heads/main"}`},
		{"issues", `{"action":"opened","issue":{"number":1}}`},
		{"pull_request", `{"action":"opened","ref":"refs/heads/main","pull_request":{"head":{"ref":"main"}}}`},
		{"push", `{"ref":"refs/heads/other","repository":{"default_branch":"main"}}`},
		{"push", `{"repository":{"default_branch":"main"}}`},
	} {
		if code, body := hook(hookSecret, h.event, "d-"+h.event+h.body[:12], h.body); code != http.StatusOK || !strings.HasPrefix(body, "ignored:") {
			t.Errorf("%s %s: %d %q, want 200 ignored", h.event, h.body, code, body)
		}
	}
	if code, body := hook(hookSecret, "push", "d-1", push); code != http.StatusAccepted {
		t.Errorf("signed push to main: %d %q, want 202", code, body)
	}
	for range 3 {
		if code, body := hook(hookSecret, "push", "d-1", push); code != http.StatusOK || !strings.Contains(body, "deployed before") {
			t.Errorf("redelivery: %d %q, want 200 ignored", code, body)
		}
	}
	after := builds()
	var triggers []string
	for _, b := range after {
		triggers = append(triggers, b.Trigger+":"+b.Status)
	}
	t.Logf("builds: %v", triggers)
	if len(after) != before+1 || after[0].Trigger != "webhook" { // newest first
		t.Errorf("builds %v: want exactly one more than the %d before, by the webhook", triggers, before)
	}
	if got := strings.Join(triggers, " "); !strings.Contains(got, "poll:succeeded") {
		t.Errorf("builds %v: want a deploy by polling", triggers)
	}
	eventually(t, 2*time.Minute, "the webhook's build did not finish", func() bool {
		return builds()[0].Status != "running"
	})
}

// A git service whose first build fails, through a real Caddy with no
// handle_errors: requests answer 503 at once (queue_timeout is 2m), first
// "building", then the build's failure in a line of text with where to
// look; `caddy podcell services` lists it with its state and error.
func TestFirstBuildFailureIsReadable(t *testing.T) {
	e2e(t)
	needPythonRuntime(t)
	repo := newGitRepo(t)
	repo.commit("v1", map[string]string{"app.py": pyApp, "message.txt": "v1"})
	c := startCaddy(t, strings.ReplaceAll(`
http://{http} {
	podcell broken {
		git REPO main
		runtime python3.11-debian
		build "echo the build breaks here; exit 3"
		start "python3 app.py"
		queue_timeout 2m
	}
}`, "REPO", repo.url)+"\n", withGlobal("runtime_image python3.11-debian localhost/podcell-runtime:python3.11-debian"))
	t0 := time.Now()
	r := c.get("/")
	took := time.Since(t0)
	if r.code != 503 || took > 10*time.Second || !strings.Contains(r.body, "service broken: building its first revision") && !strings.Contains(r.body, "service broken: build failed") {
		t.Fatalf("during the first build: %d %q after %s; want 503 at once saying it builds", r.code, r.body, took)
	}
	eventually(t, 3*time.Minute, "the first build to fail", func() bool {
		st, _ := c.buildStatus("broken", 1)
		return st == "failed"
	})
	t0 = time.Now()
	r = c.get("/")
	took = time.Since(t0)
	if r.code != 503 || took > 10*time.Second || r.header.Get("Retry-After") != "30" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") ||
		!strings.HasPrefix(r.body, "service broken: build failed: ") || !strings.HasSuffix(r.body, "; see caddy podcell builds broken\n") {
		t.Errorf("after the failed build: %d %q (Retry-After %q) after %s; want 503 at once naming the failure", r.code, r.body, r.header.Get("Retry-After"), took)
	}
	t.Logf("answer: %s", strings.TrimSpace(r.body))
	out, err := exec.Command(caddyBin, "podcell", "services", "--address", c.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "build_failed") || !strings.Contains(string(out), "\nbroken: ") {
		t.Errorf("caddy podcell services: %v\n%s", err, out)
	}
	t.Logf("caddy podcell services:\n%s", out)
}
