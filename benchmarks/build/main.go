// Command build measures podcell's image builds (builder.Builder.Build: clone
// over HTTP, generated Containerfile, build through the Podman API) against a
// plain `podman build` (CLI, --format oci) of the very same Containerfile and
// the same checked-out source, in one run, interleaved round by round so
// machine noise hits both sides alike.
//
// Two sample apps live in temporary git repositories served over HTTP on
// 127.0.0.1 by git http-backend: a Python app (stdlib http.server, a
// requirements.txt holding only comments) and a Node app (package.json with a
// start script, a lockfile without dependencies). Each side builds from its
// own branch. Per app and round, each side makes:
//
//	first    a commit that changes its dependency manifest (a comment in
//	         requirements.txt, the "description" of package.json, unique to
//	         the run, the side and the round), so the dependency layer is not
//	         in the cache: timed first build
//	rebuild  a source-only commit on top: timed rebuild, whose dependency
//	         layer should come from the cache
//
// podcell's time is the Build call (its clone included). The baseline's is
// `git clone --depth 1` of the same served branch + `podman build` of the
// Containerfile podcell generated (Result.Containerfile), both figures also
// reported without the clone. The two sides never share layers: their
// manifests differ by the side's name. Rounds alternate which side goes first;
// one untimed round per app warms caches first.
//
// It prints a markdown report on stdout (progress goes to stderr) and, with
// -json FILE, writes the same figures and every raw sample as JSON. It needs
// git (with git-http-backend), the podman CLI and the Podman API
// ($PODCELL_PODMAN_URI, default unix:///run/podman/podman.sock) on the same
// storage, and the base images named by -python-base and -node-base. Every
// image it tags (localhost/podcell-bench-build/...) is removed at the end.
//
//	GOFLAGS=-tags=containers_image_openpgp CGO_ENABLED=0 go run ./benchmarks/build -n 3
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	mach "github.com/podcell/podcell/benchmarks/machine"
	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

var (
	flagN          = flag.Int("n", 3, "timed rounds per app (each: a first build and a rebuild per side)")
	flagJSON       = flag.String("json", "", "also write the results as JSON to this file")
	flagPythonBase = flag.String("python-base", "localhost/podcell-runtime:python3.11-debian", "base image of runtime python3.11-debian")
	flagNodeBase   = flag.String("node-base", "localhost/podcell-runtime:node20-debian", "base image of runtime node20-debian")
	flagApps       = flag.String("apps", "python,node", "apps to build, comma-separated")
)

const tagRepo = "localhost/podcell-bench-build/"

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "build: "+format+"\n", args...)
}

func main() {
	flag.Parse()
	if *flagN < 1 {
		logf("-n must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		logf("error: %v", err)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------------------
// The sample apps.

type app struct {
	name    string
	runtime string
	base    string
	files   map[string]string
	// manifest returns the dependency manifest's path and content for a
	// salt; message the source file changed by a source-only commit.
	manifest func(salt string) (string, string)
	message  func(text string) (string, string)
}

var apps = map[string]app{
	"python": {
		name:    "python",
		runtime: "python3.11-debian",
		files: map[string]string{
			"app.py": `# A stdlib-only web app: answers GET / with its message, on $PORT.
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from message import MESSAGE


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = MESSAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
`,
		},
		manifest: func(salt string) (string, string) {
			return "requirements.txt", "# No dependencies: the standard library only.\n# " + salt + "\n"
		},
		message: func(text string) (string, string) {
			return "message.py", fmt.Sprintf("MESSAGE = %q\n", text)
		},
	},
	"node": {
		name:    "node",
		runtime: "node20-debian",
		files: map[string]string{
			"server.js": `// A dependency-free web app: answers GET / with its message, on $PORT.
const http = require("http");
const message = require("./message.json").message;
http
  .createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end(message);
  })
  .listen(Number(process.env.PORT || 8080), "0.0.0.0");
`,
			"package-lock.json": `{
  "name": "benchapp",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "benchapp",
      "version": "1.0.0"
    }
  }
}
`,
		},
		manifest: func(salt string) (string, string) {
			return "package.json", fmt.Sprintf(`{
  "name": "benchapp",
  "version": "1.0.0",
  "private": true,
  "description": %q,
  "scripts": {
    "start": "node server.js"
  }
}
`, salt)
		},
		message: func(text string) (string, string) {
			return "message.json", fmt.Sprintf(`{"message": %q}`+"\n", text)
		},
	},
}

// ---------------------------------------------------------------------------
// Git: a work repository per app with a branch per side, pushed to a bare
// repository that git http-backend serves.

type git struct {
	env []string
}

func (g *git) run(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), g.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

type repo struct {
	g    *git
	work string // work tree
	bare string // served
	url  string
}

// commit writes files on branch and pushes it.
func (r *repo) commit(ctx context.Context, branch, msg string, files map[string]string) (string, error) {
	if cur, _ := r.g.run(ctx, r.work, "symbolic-ref", "--short", "HEAD"); cur != branch {
		if _, err := r.g.run(ctx, r.work, "checkout", "-q", branch); err != nil {
			return "", err
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.work, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	if _, err := r.g.run(ctx, r.work, "add", "-A"); err != nil {
		return "", err
	}
	if _, err := r.g.run(ctx, r.work, "commit", "-q", "-m", msg); err != nil {
		return "", err
	}
	if _, err := r.g.run(ctx, r.work, "push", "-q", "-f", r.bare, branch); err != nil {
		return "", err
	}
	return r.g.run(ctx, r.work, "rev-parse", "HEAD")
}

// serve starts git http-backend on 127.0.0.1 for the bare repositories in root.
func serve(ctx context.Context, g *git, root, home string) (string, func(), error) {
	execPath, err := g.run(ctx, home, "--exec-path")
	if err != nil {
		return "", nil, err
	}
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return "", nil, fmt.Errorf("git-http-backend not found: %w", err)
	}
	h := &cgi.Handler{
		Path:   backend,
		Stderr: os.Stderr,
		Env:    []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + home},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// ---------------------------------------------------------------------------

type sample struct {
	App        string  `json:"app"`
	Round      int     `json:"round"` // 0: untimed warm-up
	Side       string  `json:"side"`  // podcell or baseline
	Kind       string  `json:"kind"`  // first or rebuild
	Commit     string  `json:"commit"`
	TotalMS    float64 `json:"total_ms"`    // podcell: Build call; baseline: git clone + podman build
	BuildMS    float64 `json:"build_ms"`    // podcell: Result.BuildDuration; baseline: podman build
	CacheHits  int     `json:"cache_hits"`  // steps whose layer came from the cache
	Steps      int     `json:"steps"`       // steps of the build
	FirstOrder bool    `json:"first_order"` // this side went first in its round
}

type bench struct {
	b       *builder.Builder
	tmp     string
	g       *git
	url     string
	nonce   string
	tags    []string
	samples []sample
	// cf is the latest Containerfile podcell generated per app, with its
	// LABEL line (which names the commit) set apart to compare them.
	cf        map[string]string
	cfVariant map[string]map[string]bool
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (b *bench) podcell(ctx context.Context, a app, round int, kind, commit string, firstOrder bool) error {
	tag := fmt.Sprintf("%s%s:podcell-r%d-%s", tagRepo, a.name, round, kind)
	b.tags = append(b.tags, tag)
	spec := builder.Spec{Source: builder.Source{URL: b.url + "/" + a.name + ".git", Ref: "podcell"}, Runtime: a.runtime}
	t0 := time.Now()
	res, err := b.b.Build(ctx, spec, tag, nil)
	d := time.Since(t0)
	if err != nil {
		return fmt.Errorf("podcell build: %w", err)
	}
	if res.Commit != commit {
		return fmt.Errorf("podcell built %s, want %s", res.Commit, commit)
	}
	b.cf[a.name] = res.Containerfile
	b.cfVariant[a.name][withoutLabel(res.Containerfile)] = true
	b.samples = append(b.samples, sample{App: a.name, Round: round, Side: "podcell", Kind: kind, Commit: commit,
		TotalMS: ms(d), BuildMS: ms(res.BuildDuration), CacheHits: res.CacheHits(), Steps: len(res.Steps), FirstOrder: firstOrder})
	return nil
}

func withoutLabel(cf string) string {
	var keep []string
	for _, l := range strings.Split(cf, "\n") {
		if !strings.HasPrefix(l, "LABEL ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func (b *bench) baseline(ctx context.Context, a app, round int, kind, commit string, firstOrder bool) error {
	tag := fmt.Sprintf("%s%s:baseline-r%d-%s", tagRepo, a.name, round, kind)
	b.tags = append(b.tags, tag)
	dir, err := os.MkdirTemp(b.tmp, "baseline-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cf := filepath.Join(dir, "Containerfile")
	if err := os.WriteFile(cf, []byte(b.cf[a.name]), 0o644); err != nil {
		return err
	}
	src := filepath.Join(dir, "src")

	t0 := time.Now()
	if _, err := b.g.run(ctx, dir, "clone", "-q", "--depth", "1", "--branch", "baseline", b.url+"/"+a.name+".git", src); err != nil {
		return err
	}
	got, err := b.g.run(ctx, src, "rev-parse", "HEAD")
	if err != nil {
		return err
	}
	// podcell's context excludes .git (and its Containerfile, which lives
	// outside this one).
	if err := os.RemoveAll(filepath.Join(src, ".git")); err != nil {
		return err
	}
	t1 := time.Now()
	cmd := exec.CommandContext(ctx, "podman", "build", "--format", "oci", "--layers", "--pull=missing", "-f", cf, "-t", tag, src)
	out, err := cmd.CombinedOutput()
	t2 := time.Now()
	if err != nil {
		return fmt.Errorf("podman build: %v\n%s", err, lastLines(string(out), 20))
	}
	if got != commit {
		return fmt.Errorf("baseline cloned %s, want %s", got, commit)
	}
	steps, hits := 0, 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "STEP ") {
			steps++
		}
		if strings.HasPrefix(l, "--> Using cache") {
			hits++
		}
	}
	b.samples = append(b.samples, sample{App: a.name, Round: round, Side: "baseline", Kind: kind, Commit: commit,
		TotalMS: ms(t2.Sub(t0)), BuildMS: ms(t2.Sub(t1)), CacheHits: hits, Steps: steps, FirstOrder: firstOrder})
	return nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// side runs one side's first build and rebuild of round.
func (b *bench) side(ctx context.Context, a app, r *repo, round int, side string, firstOrder bool) error {
	salt := fmt.Sprintf("podcell build benchmark %s, %s, round %d", b.nonce, side, round)
	mf, mc := a.manifest(salt)
	sf, sc := a.message(fmt.Sprintf("hello from %s round %d", side, round))
	commit, err := r.commit(ctx, side, "dependencies: "+salt, map[string]string{mf: mc, sf: sc})
	if err != nil {
		return err
	}
	build := b.podcell
	if side == "baseline" {
		build = b.baseline
	}
	if err := build(ctx, a, round, "first", commit, firstOrder); err != nil {
		return fmt.Errorf("%s first build: %w", side, err)
	}
	sf, sc = a.message(fmt.Sprintf("hello from %s round %d, edited", side, round))
	if commit, err = r.commit(ctx, side, "source only", map[string]string{sf: sc}); err != nil {
		return err
	}
	if err := build(ctx, a, round, "rebuild", commit, firstOrder); err != nil {
		return fmt.Errorf("%s rebuild: %w", side, err)
	}
	return nil
}

func (b *bench) removeImages() {
	if len(b.tags) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Tags that were never made fail the whole rmi: remove them one by one.
	removed := 0
	for _, t := range b.tags {
		if err := exec.CommandContext(ctx, "podman", "rmi", t).Run(); err == nil {
			removed++
		}
	}
	logf("removed %d image(s) tagged %s...", removed, tagRepo)
}

func run(ctx context.Context) error {
	var chosen []app
	for _, n := range strings.Split(*flagApps, ",") {
		a, ok := apps[strings.TrimSpace(n)]
		if !ok {
			return fmt.Errorf("unknown app %q: use python, node", n)
		}
		chosen = append(chosen, a)
	}
	bases := map[string]string{"python3.11-debian": *flagPythonBase, "node20-debian": *flagNodeBase}

	pm, err := scaler.NewPodman(ctx, scalertest.URI())
	if err != nil {
		return err
	}
	host, err := pm.Host(ctx)
	if err != nil {
		return err
	}
	bld, err := builder.New(pm, builder.Options{BaseImages: bases})
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "podcell-bench-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var nb [6]byte
	rand.Read(nb[:])
	g := &git{env: []string{
		"HOME=" + tmp, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=podcell bench", "GIT_AUTHOR_EMAIL=bench@podcell.invalid",
		"GIT_COMMITTER_NAME=podcell bench", "GIT_COMMITTER_EMAIL=bench@podcell.invalid",
	}}
	root := filepath.Join(tmp, "served")
	url, stopServer, err := serve(ctx, g, root, tmp)
	if err != nil {
		return err
	}
	defer stopServer()
	b := &bench{b: bld, tmp: tmp, g: g, url: url, nonce: hex.EncodeToString(nb[:]),
		cf: map[string]string{}, cfVariant: map[string]map[string]bool{}}
	defer b.removeImages()

	machine := machineInfo(host)
	logf("podman %s, %d CPUs, serving git on %s; run %s", host.Version, host.CPUs, url, b.nonce)
	machine.LoadBefore = mach.Loadavg()
	began := time.Now()
	for _, a := range chosen {
		b.cfVariant[a.name] = map[string]bool{}
		r := &repo{g: g, work: filepath.Join(tmp, "work", a.name), bare: filepath.Join(root, a.name+".git"), url: url + "/" + a.name + ".git"}
		if _, err := g.run(ctx, tmp, "init", "-q", "-b", "podcell", r.work); err != nil {
			return err
		}
		if _, err := g.run(ctx, tmp, "init", "-q", "--bare", r.bare); err != nil {
			return err
		}
		files := map[string]string{}
		for k, v := range a.files {
			files[k] = v
		}
		mf, mc := a.manifest("initial")
		sf, sc := a.message("hello")
		files[mf], files[sf] = mc, sc
		if _, err := r.commit(ctx, "podcell", "initial", files); err != nil {
			return err
		}
		if _, err := g.run(ctx, r.work, "branch", "baseline"); err != nil {
			return err
		}
		// Round 0 warms caches untimed; podcell goes first in it, so its
		// Containerfile exists before the baseline needs it.
		for round := 0; round <= *flagN; round++ {
			sides := []string{"podcell", "baseline"}
			if round%2 == 1 {
				sides = []string{"baseline", "podcell"}
			}
			for k, s := range sides {
				if err := b.side(ctx, a, r, round, s, k == 0); err != nil {
					return fmt.Errorf("%s, round %d: %w", a.name, round, err)
				}
			}
			if round == 0 {
				logf("%s: warm-up round done", a.name)
				continue
			}
			n := len(b.samples)
			for _, s := range b.samples[n-4:] {
				logf("%s round %d/%d: %s %s %.0f ms (build %.0f ms), %d/%d steps cached", a.name, round, *flagN, s.Side, s.Kind, s.TotalMS, s.BuildMS, s.CacheHits, s.Steps)
			}
		}
	}
	machine.LoadAfter = mach.Loadavg()
	machine.Duration = time.Since(began).Round(time.Second).String()

	rep := report(b, chosen, bases, machine)
	fmt.Print(rep.markdown())
	if *flagJSON != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*flagJSON, append(data, '\n'), 0o644); err != nil {
			return err
		}
		logf("wrote %s", *flagJSON)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Machine facts and the report.

type Machine struct {
	Date          string `json:"date"`
	OS            string `json:"os"`
	Kernel        string `json:"kernel"`
	CPUs          int    `json:"nproc"`
	Podman        string `json:"podman"`
	OCIRuntime    string `json:"oci_runtime"`
	CgroupVersion string `json:"cgroup_version"`
	Rootless      bool   `json:"rootless"`
	Go            string `json:"go"`
	Git           string `json:"git"`
	LoadBefore    string `json:"loadavg_before"`
	LoadAfter     string `json:"loadavg_after"`
	Duration      string `json:"duration"`
}

func machineInfo(h scaler.HostInfo) Machine {
	gv, _ := exec.Command("git", "--version").Output()
	return Machine{
		Date:          time.Now().UTC().Format(time.RFC3339),
		OS:            mach.OSName(),
		Kernel:        mach.ReadTrim("/proc/sys/kernel/osrelease"),
		CPUs:          runtime.NumCPU(),
		Podman:        h.Version,
		OCIRuntime:    h.OCIRuntime,
		CgroupVersion: h.CgroupVersion,
		Rootless:      h.Rootless,
		Go:            runtime.Version(),
		Git:           strings.TrimPrefix(strings.TrimSpace(string(gv)), "git version "),
	}
}

type Stat struct {
	N      int     `json:"n"`
	Median float64 `json:"median_ms"`
	P90    float64 `json:"p90_ms"`
	Max    float64 `json:"max_ms"`
	Min    float64 `json:"min_ms"`
}

func stat(xs []float64) Stat {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	st := Stat{N: len(s), Median: mach.Percentile(s, 50), P90: mach.Percentile(s, 90)}
	if len(s) > 0 {
		st.Min, st.Max = s[0], s[len(s)-1]
	}
	return st
}

// Figure is one side and kind of build of one app over the timed rounds.
type Figure struct {
	Side      string `json:"side"`
	Kind      string `json:"kind"`
	Total     Stat   `json:"total"` // with the clone
	Build     Stat   `json:"build"` // the image build alone
	CacheHits []int  `json:"cache_hits"`
	Steps     []int  `json:"steps"`
}

type AppReport struct {
	App      string   `json:"app"`
	Runtime  string   `json:"runtime"`
	Base     string   `json:"base_image"`
	Figures  []Figure `json:"figures"`
	Ratios   []Ratio  `json:"ratios"`
	CFSame   bool     `json:"containerfiles_same_but_label"` // every podcell build generated the same Containerfile but for its LABEL line
	Example  string   `json:"containerfile"`                 // the last one, which the baseline built last
	Manifest string   `json:"dependency_manifest"`
}

type Ratio struct {
	Name  string  `json:"name"`
	Total float64 `json:"total_median"`
	Build float64 `json:"build_median"`
}

type Report struct {
	Machine Machine     `json:"machine"`
	N       int         `json:"n"`
	Apps    []AppReport `json:"apps"`
	Samples []sample    `json:"samples"`
}

func report(b *bench, chosen []app, bases map[string]string, m Machine) Report {
	r := Report{Machine: m, N: *flagN, Samples: b.samples}
	for _, a := range chosen {
		mf, _ := a.manifest("")
		ar := AppReport{App: a.name, Runtime: a.runtime, Base: bases[a.runtime], CFSame: len(b.cfVariant[a.name]) == 1,
			Example: b.cf[a.name], Manifest: mf}
		fig := map[string]Figure{}
		for _, side := range []string{"podcell", "baseline"} {
			for _, kind := range []string{"first", "rebuild"} {
				var tot, bld []float64
				f := Figure{Side: side, Kind: kind}
				for _, s := range b.samples {
					if s.App == a.name && s.Round > 0 && s.Side == side && s.Kind == kind {
						tot = append(tot, s.TotalMS)
						bld = append(bld, s.BuildMS)
						f.CacheHits = append(f.CacheHits, s.CacheHits)
						f.Steps = append(f.Steps, s.Steps)
					}
				}
				f.Total, f.Build = stat(tot), stat(bld)
				fig[side+kind] = f
				ar.Figures = append(ar.Figures, f)
			}
		}
		ratio := func(name string, x, y Figure) Ratio {
			return Ratio{Name: name, Total: x.Total.Median / y.Total.Median, Build: x.Build.Median / y.Build.Median}
		}
		ar.Ratios = []Ratio{
			ratio("podcell / baseline, first build", fig["podcellfirst"], fig["baselinefirst"]),
			ratio("podcell / baseline, rebuild", fig["podcellrebuild"], fig["baselinerebuild"]),
			ratio("podcell rebuild / podcell first", fig["podcellrebuild"], fig["podcellfirst"]),
			ratio("baseline rebuild / baseline first", fig["baselinerebuild"], fig["baselinefirst"]),
		}
		r.Apps = append(r.Apps, ar)
	}
	return r
}

var figureText = map[string]string{
	"podcellfirst":    "podcell first build",
	"podcellrebuild":  "podcell cached rebuild",
	"baselinefirst":   "baseline `podman build`, first",
	"baselinerebuild": "baseline `podman build`, rebuild",
}

func hits(h, steps []int) string {
	var parts []string
	for i := range h {
		parts = append(parts, fmt.Sprintf("%d/%d", h[i], steps[i]))
	}
	return strings.Join(parts, ", ")
}

func (r Report) markdown() string {
	var s strings.Builder
	m := r.Machine
	fmt.Fprintf(&s, "## Image builds, %s\n\n", m.Date)
	mode := "rootful"
	if m.Rootless {
		mode = "rootless"
	}
	fmt.Fprintf(&s, "Machine: %s, kernel %s, %d CPUs, podman %s %s (OCI runtime %s), cgroup %s, git %s, %s.  \n",
		m.OS, m.Kernel, m.CPUs, m.Podman, mode, m.OCIRuntime, m.CgroupVersion, m.Git, m.Go)
	fmt.Fprintf(&s, "%d timed rounds per app after one untimed round, sides alternating first; load average %s before, %s after; %s.  \n",
		r.N, m.LoadBefore, m.LoadAfter, m.Duration)
	s.WriteString("*total*: podcell's Build call (clone included) / the baseline's `git clone --depth 1` + `podman build`; " +
		"*build*: the image build alone. Cache hits: steps from cache / steps, per round.\n")
	for _, a := range r.Apps {
		fmt.Fprintf(&s, "\n### %s (runtime %s, FROM %s)\n\n", a.App, a.Runtime, a.Base)
		s.WriteString("| figure | total median | total max | build median | build max | cache hits |\n|---|---:|---:|---:|---:|---|\n")
		for _, f := range a.Figures {
			fmt.Fprintf(&s, "| %s | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %s |\n", figureText[f.Side+f.Kind],
				f.Total.Median, f.Total.Max, f.Build.Median, f.Build.Max, hits(f.CacheHits, f.Steps))
		}
		s.WriteString("\n| ratio of medians | total | build |\n|---|---:|---:|\n")
		for _, q := range a.Ratios {
			fmt.Fprintf(&s, "| %s | %.2fx | %.2fx |\n", q.Name, q.Total, q.Build)
		}
		if !a.CFSame {
			s.WriteString("\nNote: podcell generated different Containerfiles across rounds (beyond the LABEL line).\n")
		}
	}
	if len(r.Apps) > 0 {
		s.WriteString("\nContainerfile of the last build (" + r.Apps[len(r.Apps)-1].App + "):\n\n```dockerfile\n" +
			strings.TrimRight(r.Apps[len(r.Apps)-1].Example, "\n") + "\n```\n")
	}
	return s.String()
}
