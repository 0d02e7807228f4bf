// Package builder turns a public git repository into a container image: it
// clones one commit of it, generates a Containerfile for the chosen runtime
// (dependency manifests first, so unchanged dependencies come from the layer
// cache) and builds it through the Podman API, streaming the log line by line.
package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containers/buildah/define"
	"github.com/containers/podman/v5/pkg/bindings/images"
	"github.com/containers/podman/v5/pkg/domain/entities/types"
	"github.com/distribution/reference"

	"github.com/podcell/podcell/scaler"
)

// Labels every built image carries.
const (
	LabelCommit  = "podcell.build.commit"   // the commit SHA built
	LabelRepo    = "podcell.build.repo"     // the repository URL
	LabelRef     = "podcell.build.ref"      // the ref asked for ("" = default branch)
	LabelRootDir = "podcell.build.root_dir" // the app's directory in the repository
	LabelRuntime = "podcell.build.runtime"  // the runtime name
)

// DefaultPort is the port an app listens on when Spec.Port is 0.
const DefaultPort = 8080

// Spec is what to build: where the code is, on which runtime, and how to
// build and start it.
type Spec struct {
	Source
	// Runtime is one of Runtimes(); empty: detected from the app's files
	// (see detectRuntime).
	Runtime string
	// Install replaces the detected dependency install (npm ci, pip install
	// -r requirements.txt, ...): shell run with sh -e in /app. Empty: the
	// detected one.
	Install string
	// Build is shell run (with sh -e) in /app after the dependencies are
	// installed and the source is copied; it may span lines. Empty: run
	// package.json's build script if it has one. Leading install commands
	// (pip install -r requirements.txt, npm ci, ...) replace the detected
	// install and run before the source is copied, so their layer stays
	// cached while the manifests do not change.
	Build string
	// BuildEnv are environment variables of the install and build steps
	// only (NODE_OPTIONS, NPM_CONFIG_*, ...): build arguments, not part of
	// the running container's environment. They are visible in the image's
	// history, so they are no place for secrets.
	BuildEnv map[string]string
	// Start is the shell command that starts the app. Empty: a Procfile's
	// web: line, else python3 main.py / app.py, npm start (package.json start
	// script) or node server.js, as the runtime has them.
	Start string
	Port  int // the app listens on $PORT; default 8080
	// Limits bound this build; zero fields take Options.Limits.
	Limits Limits
}

// Validate checks the spec without touching the network or Podman.
func (s Spec) Validate() error {
	_, _, err := s.normalize()
	return err
}

func (s Spec) normalize() (Spec, Runtime, error) {
	src, err := s.Source.validate()
	if err != nil {
		return s, Runtime{}, err
	}
	s.Source = src
	rt, ok := LookupRuntime(s.Runtime)
	if !ok && s.Runtime != "" {
		return s, rt, unknownRuntime(s.Runtime)
	}
	if s.Port == 0 {
		s.Port = DefaultPort
	}
	if s.Port < 1 || s.Port > 65535 {
		return s, rt, &InputError{Field: "port", Value: strconv.Itoa(s.Port), Reason: "is out of range: use 1 to 65535"}
	}
	if err := s.Limits.Validate(); err != nil {
		return s, rt, err
	}
	if err := checkBuildEnv(s.BuildEnv); err != nil {
		return s, rt, err
	}
	for _, f := range []struct{ name, v string }{{"install", s.Install}, {"build", s.Build}, {"start", s.Start}} {
		if len(f.v) > 64<<10 {
			return s, rt, &InputError{Field: f.name, Reason: "is too long (more than 64 KiB)"}
		}
		if strings.ContainsRune(f.v, 0) {
			return s, rt, &InputError{Field: f.name, Reason: "contains a NUL byte"}
		}
	}
	return s, rt, nil
}

// Options configure a Builder. Zero values take the defaults named.
type Options struct {
	// BaseImages maps a runtime name to the image it builds FROM instead of
	// the runtime's DefaultBase (e.g. a locally built image where no
	// registry is reachable).
	BaseImages map[string]string
	// TempDir holds the clones while they are built (default os.TempDir()).
	TempDir string
	// CloneTimeout bounds one clone (default 2m).
	CloneTimeout time.Duration
	// Limits bound each build's steps (memory, CPU, processes) and its
	// wall clock; a Spec's own Limits override them field by field. Zero
	// fields take the defaults: 2 GiB, 1 core, 1024 processes, 15m.
	Limits Limits
	// MaxBuilds bounds the builds (clone and image build) running at once
	// (default 1); the others wait in one queue.
	MaxBuilds int
	// MaxClones bounds concurrent clones (default 2): go-git holds several
	// times a repository's size in memory while cloning.
	MaxClones int
	// MaxLogLines bounds the lines kept per build (default 10000; the
	// oldest go first). ErrorLines is how many a BuildError quotes (default 30).
	MaxLogLines int
	ErrorLines  int
	// User the app runs as (default "10001:10001"): it owns nothing in the
	// image; only /tmp (a tmpfs at run time) is writable.
	User string
	// MaxRepoBytes bounds a repository (default DefaultMaxRepoBytes, 1 GiB;
	// negative: no limit): the bytes its server may send for one clone or
	// one Resolve, counted as they arrive (after HTTP decompression), and the
	// total size of the files of the commit built, summed from the object
	// headers before anything is checked out. MaxRepoFiles bounds the files
	// and directories of that commit (default DefaultMaxRepoFiles, 200000;
	// negative: no limit). Over a limit the clone stops with an *InputError.
	MaxRepoBytes int64
	MaxRepoFiles int
	// BuildCA is a PEM file, or a directory of *.crt/*.pem files, of extra
	// CAs the install and build steps trust on top of the base image's
	// (for a proxy that inspects TLS). Bound into those steps, not copied
	// into the image.
	BuildCA string
	// BuildProxy is the HTTP proxy of the install and build steps.
	BuildProxy Proxy
}

// Builder builds images from git repositories through one Podman API.
type Builder struct {
	rt     *scaler.Podman
	opts   Options
	ca     []byte // Options.BuildCA's certificates, or nil
	clones chan struct{}
	queue  *buildQueue
	cg     cgroupSupport
}

// ImageExists says whether Podman still has the image (a name or an ID).
func (b *Builder) ImageExists(ctx context.Context, ref string) (bool, error) {
	return images.Exists(b.rt.BindingsContext(ctx), ref, nil)
}

// New returns a Builder that builds with rt. It fails on options that name
// unknown runtimes.
func New(rt *scaler.Podman, opts Options) (*Builder, error) {
	for name, img := range opts.BaseImages {
		if _, ok := LookupRuntime(name); !ok {
			return nil, fmt.Errorf("builder: base image for %q: %w", name, unknownRuntime(name))
		}
		if _, err := reference.ParseNormalizedNamed(img); err != nil {
			return nil, fmt.Errorf("builder: base image %q for runtime %s is not an image reference: %w", img, name, err)
		}
	}
	if opts.CloneTimeout <= 0 {
		opts.CloneTimeout = 2 * time.Minute
	}
	if err := opts.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	opts.Limits = opts.Limits.or(defaultLimits)
	if opts.MaxBuilds <= 0 {
		opts.MaxBuilds = 1
	}
	if opts.MaxClones <= 0 {
		opts.MaxClones = 2
	}
	if opts.MaxLogLines <= 0 {
		opts.MaxLogLines = 10000
	}
	if opts.ErrorLines <= 0 {
		opts.ErrorLines = 30
	}
	if opts.User == "" {
		opts.User = defaultRuntimeUser
	}
	if opts.MaxRepoBytes == 0 {
		opts.MaxRepoBytes = DefaultMaxRepoBytes
	}
	if opts.MaxRepoFiles == 0 {
		opts.MaxRepoFiles = DefaultMaxRepoFiles
	}
	var ca []byte
	if opts.BuildCA != "" {
		var err error
		if ca, err = loadCA(opts.BuildCA); err != nil {
			return nil, fmt.Errorf("builder: build_ca: %w", err)
		}
	}
	if err := opts.BuildProxy.Validate(); err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	return &Builder{rt: rt, opts: opts, ca: ca, clones: make(chan struct{}, opts.MaxClones), queue: newBuildQueue(opts.MaxBuilds)}, nil
}

// Result describes a built image.
type Result struct {
	ImageID   string
	Tag       string
	Commit    string // full SHA of the commit built
	Runtime   string
	BaseImage string
	Start     string // the start command the image runs
	// Containerfile is the generated Containerfile.
	Containerfile string
	Size          int64 // bytes, as Podman reports the image
	Duration      time.Duration
	CloneDuration time.Duration
	BuildDuration time.Duration
	Steps         []Step
	// Log holds the kept log lines (clone, detection, build), oldest first;
	// LogDropped counts older lines dropped past Options.MaxLogLines.
	Log        []string
	LogDropped int
}

// CacheHits counts the steps whose layer came from the cache.
func (r *Result) CacheHits() int {
	n := 0
	for _, s := range r.Steps {
		if s.Cached {
			n++
		}
	}
	return n
}

// Step is one instruction of the build as the build output reported it.
type Step struct {
	Number      int
	Instruction string // as the build output shows it, e.g. "COPY . ."
	Purpose     string // what it is for, one of the Purpose constants
	Cached      bool   // its layer came from the cache
	Duration    time.Duration
}

// Build clones spec's source, generates its Containerfile and builds the
// image tagged tag (e.g. localhost/podcell-app:rev). Each log line goes to
// logLine (if not nil) as it arrives, from one goroutine at a time; a slow
// logLine slows the build's output down, so hand lines off rather than block.
// The lines are kept in the Result or, when the build fails, in the
// *BuildError. Bad input gives an *InputError naming the field, before
// anything is built.
//
// Builds wait in one queue for one of Options.MaxBuilds slots. Each RUN
// step runs with Podman's capabilities cut to what package managers need
// and under the build's Limits; a build stopped by a limit fails with a
// *LimitError (inside the *BuildError) naming the option to raise.
func (b *Builder) Build(ctx context.Context, spec Spec, tag string, logLine func(string)) (*Result, error) {
	spec, rt, err := spec.normalize()
	if err != nil {
		return nil, err
	}
	if err := validateTag(tag); err != nil {
		return nil, err
	}
	log := newLogSink(logLine, b.opts.MaxLogLines)
	defer log.close()
	release, err := b.queue.acquire(ctx, spec.URL+"@"+refOrHead(spec.Ref)+" as "+tag, log)
	if err != nil {
		log.printf("==> Failed: %v", err)
		return nil, err
	}
	defer release()
	res, err := b.build(ctx, spec, rt, tag, log)
	if err != nil {
		// The streamed log ends with why; a BuildError's log has it already.
		var be *BuildError
		if !errors.As(err, &be) {
			log.printf("==> Failed: %v", err)
		}
	}
	return res, err
}

func (b *Builder) build(ctx context.Context, spec Spec, rt Runtime, tag string, log *logSink) (*Result, error) {
	began := time.Now()

	tmp, err := os.MkdirTemp(b.opts.TempDir, "podcell-build-")
	if err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	defer os.RemoveAll(tmp)
	if tmp, err = filepath.EvalSymlinks(tmp); err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	checkout := filepath.Join(tmp, "src")

	commit, err := b.clone(ctx, spec.Source, checkout, log)
	if err != nil {
		return nil, err
	}
	cloned := time.Now()
	log.printf("==> Checked out %s in %s", commit, cloned.Sub(began).Round(time.Millisecond))

	dir, err := resolveRootDir(checkout, spec.RootDir)
	if err != nil {
		return nil, err
	}
	rt, detected, err := b.opts.runtimeFor(dir, spec, rt)
	if err != nil {
		return nil, err
	}
	for _, n := range detected {
		log.printf("==> %s", n)
	}
	base, aptNode := b.opts.baseImage(rt)
	p, err := generate(dir, rt, base, aptNode, spec, buildSettings{user: b.opts.User, ca: b.ca != nil, proxy: b.opts.BuildProxy})
	if err != nil {
		return nil, err
	}
	// The labels go in one LABEL instruction at the end, where their values
	// changing (the commit) costs no cache. Podman's label option would add
	// one step per label.
	p.label([][2]string{
		{LabelCommit, commit},
		{LabelRepo, spec.URL},
		{LabelRef, spec.Ref},
		{LabelRootDir, spec.RootDir},
		{LabelRuntime, rt.Name},
	})
	for _, n := range p.notes {
		log.printf("==> Detected %s", n)
	}
	log.printf("==> Containerfile (runtime %s):", rt.Name)
	for _, l := range strings.Split(strings.TrimSuffix(p.text, "\n"), "\n") {
		log.printf("    %s", l)
	}
	ignored, err := ignorePatterns(&repoDir{dir: dir, root: spec.RootDir})
	if err != nil {
		return nil, err
	}
	// The build context is a tree made beside the checkout, never the
	// checkout itself: nothing is written where the repository's links
	// could redirect it (see buildContext).
	ctxDir := filepath.Join(tmp, "context")
	if err := buildContext(dir, spec.RootDir, ctxDir, map[string][]byte{containerfileName: []byte(p.text)}); err != nil {
		var ie *InputError
		if errors.As(err, &ie) {
			return nil, err
		}
		return nil, fmt.Errorf("builder: make the build context: %w", err)
	}
	cf := filepath.Join(ctxDir, containerfileName)

	if b.rt == nil {
		return nil, errors.New("builder: no Podman runtime to build with")
	}
	steps := &stepTracker{purposes: p.purposes}
	log.observe = steps.line
	lim := spec.Limits.or(b.opts.Limits)
	common := &define.CommonBuildOptions{
		Memory:     int64(lim.MemoryMB) << 20,
		MemorySwap: int64(lim.MemoryMB) << 20, // equal to memory: no swap on top
		CPUPeriod:  100000,
		CPUQuota:   int64(lim.CPUs * 100000),
	}
	if b.ca != nil {
		ca := filepath.Join(tmp, "build-ca.pem")
		if err := os.WriteFile(ca, b.ca, 0o600); err != nil {
			return nil, fmt.Errorf("builder: %w", err)
		}
		common.Secrets = []string{"id=" + caSecretID + ",src=" + ca}
	}
	var cg *buildCgroup
	stopping := false // cg.stop removes cg later
	if ok, why := b.pidsCgroupSupport(ctx); !ok {
		log.printf("==> Warning: on this host the build pids limit is not enforced and a timed-out step cannot be stopped (%s)", why)
	} else if cg, err = newBuildCgroup(lim.Pids); err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	} else {
		defer func() {
			if !stopping {
				cg.remove()
			}
		}()
		common.CgroupParent = cg.parent()
	}
	log.printf("==> Build limits: memory %s, %g CPU, %d processes, %s; capabilities %s",
		formatMB(lim.MemoryMB), lim.CPUs, lim.Pids, lim.Timeout, strings.Join(buildCaps, " "))
	bctx, cancel := context.WithTimeout(b.rt.BindingsContext(ctx), lim.Timeout)
	defer cancel()
	report, err := images.Build(bctx, []string{cf}, types.BuildOptions{BuildOptions: define.BuildOptions{
		ContextDirectory: ctxDir,
		Output:           tag,
		// Without an explicit format the API service (4.3) finds no layer in
		// its cache: every step would run again.
		OutputFormat:            define.OCIv1ImageManifest,
		Layers:                  true,
		RemoveIntermediateCtrs:  true,
		ForceRmIntermediateCtrs: true,
		PullPolicy:              define.PullIfMissing,
		// Excludes replaces the context's .containerignore/.dockerignore,
		// so those patterns are read here and ours appended.
		Excludes:        append(ignored, ".git", containerfileName),
		CommonBuildOpts: common,
		Out:             log,
		Err:             log,
		ReportWriter:    log,

		// RUN steps keep only what package managers need.
		DropCapabilities: []string{"ALL"},
		AddCapabilities:  buildCaps,
	}})
	log.flush()
	finished := time.Now()
	steps.finish(finished)
	pidsHit := cg != nil && cg.hitLimit()
	if bctx.Err() != nil && cg != nil {
		stopping = true
		cg.stop(time.Minute)
		log.printf("==> Stopped the build's processes")
	}
	if err == nil && bctx.Err() != nil {
		// The bindings end a canceled build without an error.
		err = bctx.Err()
	}
	if err == nil && (report == nil || report.ID == "") {
		err = errors.New("the build ended without an image ID")
	}
	if err != nil {
		timedOut := errors.Is(bctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		switch {
		case pidsHit && ctx.Err() == nil:
			// A fork bomb that never ends also runs into the timeout.
			if timedOut {
				err = timeoutLimitError(lim, err)
			}
			err = pidsLimitError(lim, err)
		case timedOut:
			err = timeoutLimitError(lim, err)
		case ctx.Err() != nil:
		case killedByOOM(err):
			err = memoryLimitError(lim, err)
		}
		be := &BuildError{Err: err}
		if s := steps.current(); s != nil {
			be.Step = fmt.Sprintf("STEP %d/%d: %s", s.Number, steps.total, s.Instruction)
			be.Purpose = s.Purpose
		}
		log.printf("==> Failed: %v", (&BuildError{Step: be.Step, Purpose: be.Purpose, Err: err}).Error())
		lines, _ := log.snapshot()
		be.Log = lines
		be.Last = lines
		if len(be.Last) > b.opts.ErrorLines {
			be.Last = be.Last[len(be.Last)-b.opts.ErrorLines:]
		}
		return nil, be
	}
	res := &Result{
		ImageID:       report.ID,
		Tag:           tag,
		Commit:        commit,
		Runtime:       rt.Name,
		BaseImage:     base,
		Start:         p.start,
		Containerfile: p.text,
		CloneDuration: cloned.Sub(began),
		BuildDuration: finished.Sub(cloned),
		Steps:         steps.steps,
	}
	if img, err := images.GetImage(bctx, report.ID, nil); err == nil {
		res.Size = img.Size
	}
	res.Duration = time.Since(began)
	log.printf("==> Built %s (%s) in %s: %d of %d steps from cache", tag, shortID(report.ID), res.Duration.Round(time.Millisecond), res.CacheHits(), len(res.Steps))
	log.flush()
	res.Log, res.LogDropped = log.snapshot()
	return res, nil
}

// clone runs one clone once a clone slot is free, under CloneTimeout.
func (b *Builder) clone(ctx context.Context, src Source, dir string, log *logSink) (string, error) {
	select {
	case b.clones <- struct{}{}:
	default:
		log.printf("==> Waiting for one of the %d clones running to end", cap(b.clones))
		select {
		case b.clones <- struct{}{}:
		case <-ctx.Done():
			return "", fmt.Errorf("clone %s: waiting for a clone slot: %w", src.URL, ctx.Err())
		}
	}
	defer func() { <-b.clones }()
	ctx, cancel := context.WithTimeout(ctx, b.opts.CloneTimeout)
	defer cancel()
	commit, err := clone(ctx, src, dir, log, repoLimits{bytes: b.opts.MaxRepoBytes, files: b.opts.MaxRepoFiles})
	log.flush()
	return commit, err
}

func validateTag(tag string) error {
	if tag == "" {
		return &InputError{Field: "tag", Reason: "is required, e.g. localhost/podcell-app:1"}
	}
	named, err := reference.ParseNormalizedNamed(tag)
	if err != nil {
		return &InputError{Field: "tag", Value: tag, Reason: "is not a valid image name: " + err.Error(), Err: err}
	}
	if _, ok := named.(reference.Digested); ok {
		return &InputError{Field: "tag", Value: tag, Reason: "must be a name and tag, not a digest"}
	}
	return nil
}

// ignorePatterns reads the app's .containerignore (or .dockerignore), the
// patterns Podman would have applied on its own. Like every file podcell
// reads from a repository, it must be a regular file (see repoDir).
func ignorePatterns(dir *repoDir) ([]string, error) {
	for _, name := range []string{".containerignore", ".dockerignore"} {
		data := dir.read(name)
		if dir.err != nil {
			return nil, dir.err
		}
		if data == nil {
			continue
		}
		var out []string
		for _, l := range strings.Split(string(data), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			out = append(out, l)
		}
		return out, nil
	}
	return nil, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
