package builder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/images"

	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// These tests build real images through the Podman API FROM the local base
// images of scripts/build-base-images.sh (make base-images): no registry is
// reachable here. Without Podman or a base image a test is skipped, except
// under CI (CI=true), where it fails.

var testBaseImages = map[string]string{
	"python3.11-debian": "localhost/podcell-runtime:python3.11-debian",
	"node20-debian":     "localhost/podcell-runtime:node20-debian",
	"python3.11-node":   "localhost/podcell-runtime:python3.11-node-debian",
}

type buildEnv struct {
	t  *testing.T
	rt *scaler.Podman
	b  *Builder
	f  *fixtureRepo
}

func newBuildEnv(t *testing.T) *buildEnv {
	t.Helper()
	f := repos(t)
	rt := scalertest.Podman(t)
	b, err := New(rt, Options{BaseImages: testBaseImages, CloneTimeout: time.Minute, Limits: Limits{Timeout: 4 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	return &buildEnv{t: t, rt: rt, b: b, f: f}
}

// needBase skips (or under CI fails) the test if runtime's base image is absent.
func (e *buildEnv) needBase(runtime string) {
	e.t.Helper()
	img := testBaseImages[runtime]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok, err := images.Exists(e.rt.BindingsContext(ctx), img, nil)
	if err != nil {
		e.t.Fatalf("image exists %s: %v", img, err)
	}
	if !ok {
		if os.Getenv("CI") != "" {
			e.t.Fatalf("CI needs the base image %s: run 'make base-images' (scripts/build-base-images.sh)", img)
		}
		e.t.Skipf("base image %s is absent: run 'make base-images' (scripts/build-base-images.sh) as root", img)
	}
}

// tag returns a fresh image tag, removed when the test ends.
func (e *buildEnv) tag(name string) string {
	tag := "localhost/podcell-buildtest-" + name + ":" + randHex(4)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		images.Remove(e.rt.BindingsContext(ctx), []string{tag}, new(images.RemoveOptions).WithForce(true))
	})
	return tag
}

func (e *buildEnv) imageExists(tag string) bool {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok, err := images.Exists(e.rt.BindingsContext(ctx), tag, nil)
	if err != nil {
		e.t.Fatalf("image exists %s: %v", tag, err)
	}
	return ok
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// timedLog collects the streamed lines with the time each arrived.
type timedLog struct {
	mu    sync.Mutex
	lines []string
	at    []time.Time
}

func (l *timedLog) line(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
	l.at = append(l.at, time.Now())
}

// build runs a build and checks what every successful build must give.
func (e *buildEnv) build(spec Spec, tag string) (*Result, *timedLog) {
	e.t.Helper()
	tl := &timedLog{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := e.b.Build(ctx, spec, tag, tl.line)
	if err != nil {
		e.t.Fatalf("build: %v", err)
	}
	if len(tl.lines) != len(res.Log) || res.LogDropped != 0 {
		e.t.Errorf("streamed %d lines, kept %d (dropped %d)", len(tl.lines), len(res.Log), res.LogDropped)
	}
	if res.ImageID == "" || res.Tag != tag || len(res.Commit) != 40 {
		e.t.Errorf("result: %+v", res)
	}
	img, err := images.GetImage(e.rt.BindingsContext(ctx), tag, nil)
	if err != nil {
		e.t.Fatalf("inspect %s: %v", tag, err)
	}
	if img.Labels[LabelCommit] != res.Commit || img.Labels[LabelRepo] != spec.URL || img.Labels[LabelRuntime] != res.Runtime || (spec.Runtime != "" && res.Runtime != spec.Runtime) {
		e.t.Errorf("labels: %v", img.Labels)
	}
	if img.Config == nil || img.Config.User != defaultRuntimeUser {
		e.t.Errorf("image user: %+v", img.Config)
	}
	var steps []string
	for _, s := range res.Steps {
		c := ""
		if s.Cached {
			c = " (cache)"
		}
		steps = append(steps, s.Duration.Round(time.Millisecond).String()+c+"  "+s.Purpose)
	}
	e.t.Logf("built %s from %s@%s in %s (clone %s, build %s), %d of %d steps cached, %.1f MB; steps:\n  %s",
		tag, spec.URL, res.Commit[:8], res.Duration.Round(time.Millisecond), res.CloneDuration.Round(time.Millisecond),
		res.BuildDuration.Round(time.Millisecond), res.CacheHits(), len(res.Steps), float64(res.Size)/1e6, strings.Join(steps, "\n  "))
	return res, tl
}

// run starts the image the way the scaler does (read-only root, /tmp tmpfs,
// no capabilities, init) and returns the body of GET /.
func (e *buildEnv) run(tag string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lim, err := scaler.LimitsFor(256, 64, 256)
	if err != nil {
		e.t.Fatal(err)
	}
	id, err := e.rt.Create(ctx, scaler.ContainerSpec{
		Name:        "podcell-buildtest-" + randHex(4),
		Image:       tag,
		Env:         map[string]string{"PORT": "8080"},
		Labels:      map[string]string{scaler.LabelPort: "8080"},
		Port:        8080,
		Limits:      lim,
		StopTimeout: time.Second,
	})
	if err != nil {
		e.t.Fatalf("create: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e.rt.Remove(ctx, id)
	})
	began := time.Now()
	if err := e.rt.Start(ctx, id); err != nil {
		e.t.Fatalf("start: %v", err)
	}
	var last error
	for time.Since(began) < 20*time.Second {
		info, err := e.rt.Inspect(ctx, id)
		if err != nil {
			e.t.Fatalf("inspect: %v", err)
		}
		if info.State != scaler.StateRunning {
			logs, _ := e.rt.Logs(ctx, id, 20)
			e.t.Fatalf("container %s (exit %d); logs:\n%s", info.State, info.ExitCode, strings.Join(logs, "\n"))
		}
		if info.Addr != "" {
			resp, err := http.Get("http://" + info.Addr + "/")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				e.t.Logf("%s answered %d after %s: %q", tag, resp.StatusCode, time.Since(began).Round(time.Millisecond), body)
				return string(body)
			}
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	logs, _ := e.rt.Logs(ctx, id, 20)
	e.t.Fatalf("no answer from %s: %v; logs:\n%s", tag, last, strings.Join(logs, "\n"))
	return ""
}

func stepFor(res *Result, purpose string) *Step {
	for i := range res.Steps {
		if res.Steps[i].Purpose == purpose {
			return &res.Steps[i]
		}
	}
	return nil
}

// TestBuildPython builds the Python app (requirements.txt, Procfile) at tag
// v1, runs it, then rebuilds at branch feature, where only the source
// changed: the dependency layer comes from the cache.
func TestBuildPython(t *testing.T) {
	e := newBuildEnv(t)
	e.needBase("python3.11-debian")
	spec := Spec{Source: Source{URL: e.f.url("app.git"), Ref: "v1"}, Runtime: "python3.11-debian"}
	tag := e.tag("python")
	res, tl := e.build(spec, tag)
	if res.Commit != e.f.A {
		t.Errorf("commit = %s, want %s (tag v1)", res.Commit, e.f.A)
	}
	if res.Start != "python3 app.py" {
		t.Errorf("start = %q, want the Procfile's web command", res.Start)
	}
	if !strings.Contains(res.Containerfile, `COPY ["requirements.txt","./"]`) {
		t.Errorf("Containerfile:\n%s", res.Containerfile)
	}
	// Lines arrive while the build runs, not all at its end.
	first, last := -1, -1
	for i, l := range tl.lines {
		if strings.HasPrefix(l, "STEP 1/") {
			first = i
		}
		if strings.HasPrefix(l, "COMMIT") {
			last = i
		}
	}
	if first < 0 || last < 0 {
		t.Fatalf("no STEP 1 or COMMIT line in the log:\n%s", strings.Join(tl.lines, "\n"))
	}
	t.Logf("log streamed: STEP 1 arrived %s before COMMIT", tl.at[last].Sub(tl.at[first]).Round(time.Millisecond))
	if got := e.run(tag); got != "hello from python" {
		t.Errorf("GET / = %q", got)
	}

	// Source-only change: same requirements.txt, new message.py.
	spec.Ref = "feature"
	tag2 := e.tag("python")
	res2, _ := e.build(spec, tag2)
	if res2.Commit != e.f.F {
		t.Errorf("commit = %s, want %s (branch feature)", res2.Commit, e.f.F)
	}
	install := stepFor(res2, PurposeInstall)
	if install == nil || !install.Cached {
		t.Errorf("dependency install step not from the cache: %+v\nlog:\n%s", install, strings.Join(res2.Log, "\n"))
	}
	if src := stepFor(res2, PurposeSource); src == nil || src.Cached {
		t.Errorf("source copy step came from the cache after a source change: %+v", src)
	}
	if !strings.Contains(strings.Join(res2.Log, "\n"), "--> Using cache") {
		t.Errorf("no 'Using cache' in the rebuild's log")
	}
	t.Logf("python: first build %s (build part %s), rebuild after a source change %s (build part %s)",
		res.Duration.Round(time.Millisecond), res.BuildDuration.Round(time.Millisecond),
		res2.Duration.Round(time.Millisecond), res2.BuildDuration.Round(time.Millisecond))
	if got := e.run(tag2); got != "hello from feature" {
		t.Errorf("GET / = %q", got)
	}
}

// TestBuildNode builds the Node app from the monorepo's apps/node on the
// default branch (npm ci with its lock file, the start script), runs it, and
// rebuilds after a source-only change.
func TestBuildNode(t *testing.T) {
	e := newBuildEnv(t)
	e.needBase("node20-debian")
	spec := Spec{Source: Source{URL: e.f.url("app.git"), RootDir: "apps/node"}, Runtime: "node20-debian"}
	tag := e.tag("node")
	res, _ := e.build(spec, tag)
	if res.Commit != e.f.B {
		t.Errorf("commit = %s, want main's %s", res.Commit, e.f.B)
	}
	if res.Start != "node server.js" {
		t.Errorf("start = %q, want the start script, node server.js", res.Start)
	}
	if i, s := strings.Index(res.Containerfile, `"npm ci"`), strings.Index(res.Containerfile, "COPY . ."); i < 0 || i > s {
		t.Errorf("npm ci is not before the source copy:\n%s", res.Containerfile)
	}
	if got := e.run(tag); got != "hello from node" {
		t.Errorf("GET / = %q", got)
	}

	spec.Ref = "feature"
	tag2 := e.tag("node")
	res2, _ := e.build(spec, tag2)
	if install := stepFor(res2, PurposeInstall); install == nil || !install.Cached {
		t.Errorf("npm ci step not from the cache: %+v", install)
	}
	t.Logf("node: first build %s (build part %s), rebuild after a source change %s (build part %s)",
		res.Duration.Round(time.Millisecond), res.BuildDuration.Round(time.Millisecond),
		res2.Duration.Round(time.Millisecond), res2.BuildDuration.Round(time.Millisecond))
	if got := e.run(tag2); got != "hello from node feature" {
		t.Errorf("GET / = %q", got)
	}
}

// TestBuildPythonNode builds on the Python + Node.js runtime with explicit,
// multi-line commands: the leading npm ci is hoisted before the source copy,
// the rest runs after it.
func TestBuildPythonNode(t *testing.T) {
	e := newBuildEnv(t)
	e.needBase("python3.11-node")
	spec := Spec{
		Source:  Source{URL: e.f.url("app.git"), Ref: e.f.A, RootDir: "apps/node"},
		Runtime: "python3.11-node",
		Build:   "npm ci\npython3 --version\nnode --version > node-version.txt",
		Start:   "exec node server.js",
		Port:    8080,
	}
	tag := e.tag("pynode")
	res, _ := e.build(spec, tag)
	if res.Commit != e.f.A {
		t.Errorf("commit = %s, want %s", res.Commit, e.f.A)
	}
	if s := stepFor(res, PurposeInstall); s == nil || !strings.Contains(s.Instruction, "npm ci") {
		t.Errorf("npm ci was not hoisted into the install step: %+v\n%s", s, res.Containerfile)
	}
	if s := stepFor(res, PurposeBuild); s == nil || !strings.Contains(s.Instruction, "python3 --version") || strings.Contains(s.Instruction, "npm ci") {
		t.Errorf("build step: %+v", s)
	}
	if !strings.Contains(strings.Join(res.Log, "\n"), "Python 3.11") {
		t.Errorf("python3 --version did not run in the build")
	}
	if strings.Contains(res.Containerfile, "apt-get") {
		t.Errorf("a configured base image must not get nodejs from apt:\n%s", res.Containerfile)
	}
	if got := e.run(tag); got != "hello from node" {
		t.Errorf("GET / = %q", got)
	}
}

// TestBuildFailure: a failing build command gives an error naming the step
// with the last log lines, and no image.
func TestBuildFailure(t *testing.T) {
	e := newBuildEnv(t)
	e.needBase("python3.11-debian")
	tag := e.tag("fail")
	// tools holds nothing that changes between test runs: the layers this
	// failed build leaves in the cache are the same each time.
	spec := Spec{Source: Source{URL: e.f.url("app.git"), Ref: "v1", RootDir: "tools"}, Runtime: "python3.11-debian", Build: "echo about to fail\nexit 3"}
	var streamed []string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := e.b.Build(ctx, spec, tag, func(l string) { streamed = append(streamed, l) })
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v (%T), want a *BuildError", err, err)
	}
	t.Logf("error:\n%v", err)
	if be.Purpose != PurposeBuild || !strings.Contains(be.Step, "STEP ") || !strings.Contains(be.Step, "exit 3") {
		t.Errorf("step %q purpose %q, want the build command's step", be.Step, be.Purpose)
	}
	if len(be.Last) == 0 || len(be.Last) > 30 || !strings.Contains(strings.Join(be.Last, "\n"), "about to fail") {
		t.Errorf("last lines: %q", be.Last)
	}
	if !strings.Contains(err.Error(), "exit status 3") && !strings.Contains(err.Error(), "exit code 3") {
		t.Errorf("the error does not give the exit status: %v", err)
	}
	if len(be.Log) != len(streamed) {
		t.Errorf("kept %d lines, streamed %d", len(be.Log), len(streamed))
	}
	if e.imageExists(tag) {
		t.Errorf("image %s exists after a failed build", tag)
	}
}

// TestBuildBadInputs: bad inputs give errors naming the field, and nothing
// is built. Podman is only needed to check that no image appeared.
func TestBuildBadInputs(t *testing.T) {
	f := repos(t)
	rt, _ := scaler.NewPodman(context.Background(), scalertest.URI())
	b, err := New(rt, Options{BaseImages: testBaseImages})
	if err != nil {
		t.Fatal(err)
	}
	good := Spec{Source: Source{URL: f.url("app.git")}, Runtime: "python3.11-debian"}
	with := func(mod func(*Spec)) Spec { s := good; mod(&s); return s }
	for _, tc := range []struct {
		name  string
		spec  Spec
		tag   string
		field string
		want  string
	}{
		{"malformed url", with(func(s *Spec) { s.URL = "https//github.com/owner/repo" }), "", "url", "malformed"},
		{"unknown ref", with(func(s *Spec) { s.Ref = "no-such-branch" }), "", "ref", "was not found"},
		{"missing repo", with(func(s *Spec) { s.URL = f.url("missing.git") }), "", "url", "404"},
		{"private repo", with(func(s *Spec) { s.URL = f.url("private/app.git") }), "", "url", "private"},
		{"missing root dir", with(func(s *Spec) { s.RootDir = "apps/web" }), "", "root_dir", "does not exist"},
		{"unknown runtime", with(func(s *Spec) { s.Runtime = "ruby3.3" }), "", "runtime", "python3.11-alpine, python3.11-debian"},
		{"no start command", with(func(s *Spec) { s.RootDir = "apps" }), "", "start", "is required"},
		{"bad port", with(func(s *Spec) { s.Port = -1 }), "", "port", "out of range"},
		{"bad tag", good, "Not A Tag", "tag", "not a valid image name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag := tc.tag
			if tag == "" {
				tag = "localhost/podcell-buildtest-bad:" + randHex(4)
			}
			var streamed []string
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := b.Build(ctx, tc.spec, tag, func(l string) { streamed = append(streamed, l) })
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v (%T), want an *InputError", err, err)
			}
			if ie.Field != tc.field || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), tc.field+" ") {
				t.Errorf("err = %q (field %s), want field %s and %q", err, ie.Field, tc.field, tc.want)
			}
			t.Logf("%v", err)
			for _, l := range streamed {
				if strings.HasPrefix(l, "STEP ") {
					t.Errorf("a build ran: %q", l)
				}
			}
			if rt != nil && tc.tag == "" {
				if ok, err := images.Exists(rt.BindingsContext(ctx), tag, nil); err != nil || ok {
					t.Errorf("image %s exists: %v %v", tag, ok, err)
				}
			}
		})
	}
}
