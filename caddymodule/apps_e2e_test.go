package caddymodule_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The real-shaped apps suite (issue 14): apps as users push them, each a
// git repository served over smart HTTP and declared with its source only
// (no runtime, install, build or start), deployed by one Caddy that builds
// them side by side. Each must answer 200 through Caddy. Two fail the way
// real apps do, and the user must see why: one listens on 127.0.0.1, one's
// build script exits 1. The apps are plain files under testdata/apps/.

// appCase is one app of the suite.
type appCase struct {
	name string // the service, its host (<name>.localhost) and testdata/apps/<name>
	git  string // lines of the podcell block besides git (source options only)
	// buildLog: lines the build log must have (what was detected).
	buildLog []string
	check    func(t *testing.T, c *caddyProc, a appCase)
}

// appFiles reads testdata/apps/<name> into the files of a commit.
func appFiles(t *testing.T, name string) map[string]string {
	t.Helper()
	root := filepath.Join("testdata", "apps", name)
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("testdata/apps/%s: %v (%d files)", name, err, len(files))
	}
	return files
}

// withHostCA trusts this machine's extra CAs in builds (build_ca), so that
// npm reaches the registry through a proxy that inspects TLS, as on this
// project's machines; a machine without extra CAs needs none.
func withHostCA() option {
	const dir = "/usr/local/share/ca-certificates"
	if m, _ := filepath.Glob(filepath.Join(dir, "*.crt")); len(m) > 0 {
		return withGlobal("build_ca " + dir)
	}
	return func(*caddyProc) {}
}

// appBuild is one build as GET /podcell/services/<name>/builds lists it.
type appBuild struct {
	ID      int     `json:"id"`
	Status  string  `json:"status"`
	Reason  string  `json:"reason"`
	Seconds float64 `json:"seconds"`
	Image   string  `json:"image"`
}

// adminGet reads a path of the admin API; errors fail t (not c.t: the
// suite's subtests call it).
func adminGet(t *testing.T, c *caddyProc, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + c.admin + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// builtImages are the images the suite's builds made, by service, for the
// cleanup. Only the test goroutine of TestApps and its sequential subtests
// touch it.
var builtImages = map[string][]string{}

// firstBuild waits for the service's first build to end and returns it
// with its log.
func firstBuild(t *testing.T, c *caddyProc, name string) (appBuild, string) {
	t.Helper()
	var done *appBuild
	deadline := time.Now().Add(8 * time.Minute)
	for done == nil {
		var builds []appBuild
		if code, body := adminGet(t, c, "/podcell/services/"+name+"/builds"); code == 200 {
			json.Unmarshal([]byte(body), &builds)
		}
		for _, b := range builds {
			if b.Status == "succeeded" || b.Status == "failed" {
				done = &b
				break
			}
		}
		if done != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no build ended within 8 minutes (builds: %+v)", name, builds)
		}
		time.Sleep(250 * time.Millisecond)
	}
	_, log := adminGet(t, c, fmt.Sprintf("/podcell/services/%s/builds/%d/log", name, done.ID))
	if done.Image != "" {
		builtImages[name] = append(builtImages[name], done.Image)
	}
	return *done, log
}

// logLine is a line of GET /podcell/services/<name>/logs.
type logLine struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	Text   string    `json:"text"`
}

func serviceLogs(t *testing.T, c *caddyProc, name string) []logLine {
	t.Helper()
	_, body := adminGet(t, c, "/podcell/services/"+name+"/logs?tail=200")
	var lines []logLine
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// logTimes logs where a build's time went: the wait for a slot, the
// image build, the move to the rootful store.
func logTimes(t *testing.T, b appBuild, log string) {
	t.Helper()
	var times []string
	for _, l := range strings.Split(log, "\n") {
		for _, p := range []string{"==> Got a build slot", "==> Copied the base image in", "==> Built ", "==> Moved the image"} {
			if strings.HasPrefix(l, p) {
				times = append(times, strings.TrimPrefix(l, "==> "))
			}
		}
	}
	t.Logf("build %d %s in %.1fs: %s", b.ID, b.Status, b.Seconds, strings.Join(times, "; "))
}

// built waits for the app's first build, which must end with status, and
// checks that its log says what a.buildLog names.
func built(t *testing.T, c *caddyProc, a appCase, status string) (appBuild, string) {
	t.Helper()
	b, log := firstBuild(t, c, a.name)
	if b.Status != status {
		t.Fatalf("build %d %s, want %s: %s\n%s", b.ID, b.Status, status, b.Reason, tail(log, 40))
	}
	logTimes(t, b, log)
	for _, w := range a.buildLog {
		if !strings.Contains(log, w) {
			t.Errorf("the build log lacks %q:\n%s", w, tail(log, 60))
		}
	}
	return b, log
}

// answers checks that the app answers 200 through Caddy with want in its body.
func answers(want string) func(t *testing.T, c *caddyProc, a appCase) {
	return func(t *testing.T, c *caddyProc, a appCase) {
		built(t, c, a, "succeeded")
		t0 := time.Now()
		r := c.getHost(a.name+".localhost", "/")
		if r.err != nil || r.code != 200 || !strings.Contains(r.body, want) {
			t.Fatalf("GET / through Caddy: %d %q %v; want 200 with %q", r.code, r.body, r.err, want)
		}
		t.Logf("first request: 200 in %s (a cold start)", time.Since(t0).Round(time.Millisecond))
	}
}

var apps = []appCase{
	{
		// Python builds first (small image): the loopback app's start is
		// watched while the Node.js apps build.
		name:     "loopback",
		buildLog: []string{"Detected runtime python3.11-debian", "start command: python3 app.py (from app.py)"},
		check:    checkLoopback,
	},
	{
		// server.py, not main.py or app.py: the Procfile alone says Python.
		name:     "procfile",
		buildLog: []string{"Detected runtime python3.11-debian (Python 3.11) from the Procfile's web command (python)", `start command: python server.py --greeting "hello from the Procfile" (from Procfile web:)`},
		check:    answers("hello from the Procfile"),
	},
	{
		name:     "monorepo",
		git:      "root apps/api",
		buildLog: []string{"Detected runtime python3.11-debian (Python 3.11) from requirements.txt", "start command: python3 main.py"},
		check:    answers(`{"app": "api", "cwd": "/app", "files": ["main.py", "requirements.txt"]}`),
	},
	{
		name:     "buildfail",
		buildLog: []string{"npm run build"},
		check:    checkBuildFail,
	},
	{
		name:     "npm",
		buildLog: []string{"Detected runtime node20-debian", "package manager npm (from package-lock.json): npm ci", "start command: node server.js"},
		check:    answers("npm app on polka 0.5.2"),
	},
	{
		name:     "yarn",
		buildLog: []string{"Detected runtime node20-debian", "package manager yarn (from yarn.lock): corepack enable && yarn install --frozen-lockfile", "start command: node index.js"},
		check:    answers("yarn app: 1m on polka 0.5.2"),
	},
	{
		name:     "buildstep",
		buildLog: []string{"package.json has a build script: npm run build", "start command: node scripts/serve.js"},
		check:    answers("<h1>built by npm run build</h1>"),
	},
}

// TestApps deploys the suite's apps from git, without hints, on one Caddy.
func TestApps(t *testing.T) {
	e2e(t)
	for _, img := range []string{"python3.11-debian", "node20-debian"} {
		if _, err := exec.Command("podman", "image", "exists", "localhost/podcell-runtime:"+img).CombinedOutput(); err != nil {
			t.Fatalf("the local %s runtime image is missing: run make base-images", img)
		}
	}
	var site strings.Builder
	for _, a := range apps {
		repo := newGitRepo(t)
		repo.commit(a.name, appFiles(t, a.name))
		fmt.Fprintf(&site, "http://%s.localhost:{httpport} {\n\tpodcell %s {\n\t\tgit %s\n\t\t%s\n\t}\n}\n", a.name, a.name, repo.url, a.git)
	}
	// After Caddy stops (cleanups run last first): the images the apps ran,
	// from the rootful store. The build user's store keeps them as the
	// layer cache of the next run.
	t.Cleanup(func() {
		for _, a := range apps {
			for _, img := range builtImages[a.name] {
				if out, err := exec.Command("podman", "rmi", img).CombinedOutput(); err != nil {
					t.Logf("podman rmi %s: %v %s", img, err, out)
				}
			}
		}
	})
	t0 := time.Now()
	c := startCaddy(t, site.String(),
		withGlobal("runtime_image python3.11-debian localhost/podcell-runtime:python3.11-debian"),
		withGlobal("runtime_image node20-debian localhost/podcell-runtime:node20-debian"),
		// Two builds at once: each is held to one core (build_cpus).
		withGlobal("build_concurrency 2"),
		withHostCA())
	for _, a := range apps {
		t.Run(a.name, func(t *testing.T) { a.check(t, c, a) })
	}
	t.Logf("%d apps built and checked in %s", len(apps), time.Since(t0).Round(time.Second))
}

// checkLoopback: an app that listens on 127.0.0.1 only never answers the
// gateway. Within seconds of its output, not after start_timeout (60s),
// the start hint says so in the events and in the service's logs, beside
// the app's own output.
func checkLoopback(t *testing.T, c *caddyProc, a appCase) {
	built(t, c, a, "succeeded")
	// The first request starts an instance and waits for it; it is
	// abandoned once the hint is seen.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answered := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.http+"/", nil)
		req.Host = a.name + ".localhost"
		resp, err := client.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	sent := time.Now()
	type event struct {
		Time    time.Time `json:"time"`
		Kind    string    `json:"kind"`
		Message string    `json:"message"`
	}
	var hint *event
	for hint == nil {
		var events []event
		_, body := adminGet(t, c, "/podcell/events?service="+a.name)
		json.Unmarshal([]byte(body), &events)
		for _, e := range events {
			if e.Kind == "start_hint" {
				hint = &e
				break
			}
		}
		if hint != nil {
			break
		}
		select {
		case code := <-answered:
			t.Fatalf("the request was answered (%d) before any start hint; events: %s", code, body)
		default:
		}
		if time.Since(sent) > 30*time.Second {
			t.Fatalf("no start_hint event 30s after the request (start_timeout is 60s); events: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := time.Since(sent)
	if !strings.Contains(hint.Message, "127.0.0.1") || !strings.Contains(hint.Message, "0.0.0.0") {
		t.Errorf("the start hint %q does not say that the app listens on 127.0.0.1 and must listen on 0.0.0.0", hint.Message)
	}
	// The logs: the app's own line, then podcell's hint, seconds apart.
	var out, hintLine *logLine
	lines := serviceLogs(t, c, a.name)
	for i, l := range lines {
		switch {
		case out == nil && strings.Contains(l.Text, "serving on http://127.0.0.1:"):
			out = &lines[i]
		case hintLine == nil && l.Stream == "podcell" && l.Text == hint.Message:
			hintLine = &lines[i]
		}
	}
	if out == nil || hintLine == nil {
		t.Fatalf("the service's logs lack the app's output or the hint: %+v", lines)
	}
	after := hintLine.Time.Sub(out.Time)
	t.Logf("start hint %s after the request, %s after the app's output: %q", seen.Round(time.Millisecond), after.Round(time.Millisecond), hint.Message)
	if after > 10*time.Second || seen > 20*time.Second {
		t.Errorf("the hint came %s after the app's output, %s after the request: want seconds, long before start_timeout (60s)", after, seen)
	}
}

// checkBuildFail: a first build that fails (its build script exits 1)
// leaves no revision; a request is answered 503 at once, not after
// queue_timeout (30s), and the failure is there to read: the answer or the
// service's builds name it.
func checkBuildFail(t *testing.T, c *caddyProc, a appCase) {
	b, log := built(t, c, a, "failed")
	if !strings.Contains(log, "error TS2322") {
		t.Errorf("the build log lacks the build script's error:\n%s", tail(log, 40))
	}
	t0 := time.Now()
	r := c.getHost(a.name+".localhost", "/")
	took := time.Since(t0)
	if r.err != nil || r.code != 503 {
		t.Fatalf("GET / after the failed build: %d %q %v, want 503", r.code, r.body, r.err)
	}
	if took > 5*time.Second {
		t.Errorf("the 503 took %s: it must come at once, not after queue_timeout", took)
	}
	t.Logf("503 in %s: %q; build reason: %q", took.Round(time.Millisecond), r.body, b.Reason)
	if !strings.Contains(r.body, "build") && !strings.Contains(b.Reason, "npm run build") {
		t.Errorf("neither the 503 body %q nor the build's reason %q names the failed build", r.body, b.Reason)
	}
	// The reason names the user's command and its error, not build_ca's
	// plumbing around it.
	if !strings.Contains(b.Reason, `"npm run build"] (build command)`) || !strings.Contains(b.Reason, "error TS2322") || strings.Contains(b.Reason, "NODE_EXTRA_CA_CERTS") {
		t.Errorf("the build's reason does not read as the failed build command and its error:\n%s", b.Reason)
	}
}
