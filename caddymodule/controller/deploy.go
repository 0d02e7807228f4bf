package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/caddymodule/store"
)

// A service built from git has a deployer: it builds images from the
// service's source and, after each successful build, applies the service
// with the new image, which rolls instances over. A failed build leaves the
// running revision alone. A deployer belongs to the controller, so a build
// in progress survives config reloads.

const keptBuilds = 20

type deployer struct {
	name string
	c    *Controller // applies a finished build (deployed), keeps builds in its store
	gw   *Gateway    // told when a build starts, and when one fails with no revision running
	log  *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	b       Builder // the running config's
	spec    builder.Spec
	poll    time.Duration
	builds  []*buildRecord
	nextID  int
	current *buildRecord // whose image serves
	running *buildRecord
	again   bool // a deploy was asked for while one ran
	pollSet chan struct{}
	// images is held (a one-slot semaphore) by a build from its start
	// until its image serves, by an image collection and by a rollback's
	// check that its image still exists, so that a collection never
	// removes an image about to serve. Taken before mu, never under it.
	images     chan struct{}
	keepImages int // see DefaultKeepImages
	// deliveries are the webhooks that deployed; in memory only (the
	// webhook section of docs/configuration.md says why).
	deliveries deliveryLog
	// failure is the last failed build, until a build succeeds: a config
	// reload (or an API PUT) does not build the same source and commit
	// again within its backoff (see reconcileDeploy). In memory only: a
	// restart tries once more.
	failure *buildFailure
	skipped int // rebuilds reconcileDeploy skipped
}

// buildFailure is what a failed build was of, and when to try it again.
type buildFailure struct {
	tag     string        // imageTag of the spec: the source and every build setting
	commit  string        // the commit it checked out; "" if it failed before (the clone)
	at      time.Time     // when it failed
	backoff time.Duration // no rebuild of the same tag and commit before at+backoff
	logged  bool          // a skipped rebuild was logged
}

// Backoff of the rebuilds of a failed source on reloads: 10 minutes,
// doubling with each failure of the same source up to 6 hours.
const (
	failedBuildBackoff    = 10 * time.Minute
	maxFailedBuildBackoff = 6 * time.Hour
)

// same says whether f is a failure of tag at commit within its backoff.
func (f *buildFailure) same(tag, commit string, now time.Time) bool {
	return f != nil && f.tag == tag && f.commit == commit && now.Sub(f.at) < f.backoff
}

// buildRecord is one build: its state and its log, which followers can
// read while it grows.
type buildRecord struct {
	BuildInfo // guarded by the deployer's mu
	imageID   string

	mu        sync.Mutex
	lines     []string
	layers    []string      // the images its steps made (not from the cache), for the image collection
	fromCache bool          // the last line said the next layer comes from the cache
	changed   chan struct{} // closed and replaced on every new line
	done      bool
}

const maxBuildLines = 10000

// maxBuildLayers bounds the layers recorded per build (one per step).
const maxBuildLayers = 1000

func (b *buildRecord) addLine(line string) {
	b.mu.Lock()
	// Only the layers the build made: one it took from the cache may be
	// another service's, which that service's collection removes.
	if id, ok := builder.LayerID(line); ok && !b.fromCache && len(b.layers) < maxBuildLayers {
		b.layers = append(b.layers, id)
	}
	b.fromCache = strings.HasPrefix(line, "--> Using cache ")
	if len(b.lines) < maxBuildLines {
		b.lines = append(b.lines, line)
	} else if len(b.lines) == maxBuildLines {
		b.lines = append(b.lines, "[log truncated: more than 10000 lines]")
	}
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *buildRecord) finish() {
	b.mu.Lock()
	b.done = true
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// linesFrom returns the lines from index i on, whether the build is done,
// and a channel closed when there is more.
func (b *buildRecord) linesFrom(i int) ([]string, bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	if i < len(b.lines) {
		out = append(out, b.lines[i:]...)
	}
	return out, b.done, b.changed
}

// BuildInfo describes one build.
type BuildInfo struct {
	ID       int       `json:"id"`
	Status   string    `json:"status"` // running, succeeded, failed
	Reason   string    `json:"reason,omitempty"`
	Trigger  string    `json:"trigger"`
	Commit   string    `json:"commit,omitempty"`
	Image    string    `json:"image,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Seconds  float64   `json:"seconds,omitempty"`
}

// DeployStatus is what the admin API shows of a service's deploys.
type DeployStatus struct {
	Source  GitSource   `json:"source"` // without its webhook and poll settings
	Current *BuildInfo  `json:"current,omitempty"`
	Running *BuildInfo  `json:"running,omitempty"`
	Builds  []BuildInfo `json:"builds"` // newest first
}

// sourceStatus is spec as the admin API shows it: a git service's
// settings under the names a PUT takes them (never its webhook secret).
func sourceStatus(spec builder.Spec) GitSource {
	return GitSource{URL: spec.URL, Ref: spec.Ref, Root: spec.RootDir, Runtime: spec.Runtime, Install: spec.Install,
		Build: spec.Build, BuildEnv: spec.BuildEnv, Start: spec.Start,
		BuildMemoryMB: spec.Limits.MemoryMB, BuildCPUs: spec.Limits.CPUs, BuildPids: spec.Limits.Pids,
		BuildTimeout: Duration(spec.Limits.Timeout)}
}

// newDeployer makes the deployer of a git service, with the builds an
// earlier run stored, and starts its poll loop.
func (c *Controller) newDeployer(name string, gw *Gateway) *deployer {
	ctx, cancel := context.WithCancel(context.Background())
	d := &deployer{name: name, c: c, gw: gw, log: c.log.Named("build"), ctx: ctx, cancel: cancel,
		pollSet: make(chan struct{}, 1), images: make(chan struct{}, 1), keepImages: c.settings.KeepImages}
	d.loadBuilds()
	c.spawn(d.pollLoop)
	return d
}

// status is what the admin API shows of the deployer.
func (d *deployer) status() *DeployStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := &DeployStatus{Source: sourceStatus(d.spec), Builds: []BuildInfo{}}
	if d.current != nil {
		info := d.current.BuildInfo
		st.Current = &info
	}
	if d.running != nil {
		info := d.running.BuildInfo
		st.Running = &info
	}
	for i := len(d.builds) - 1; i >= 0; i-- { // newest first, as revisions and cron runs
		st.Builds = append(st.Builds, d.builds[i].BuildInfo)
	}
	return st
}

// tagOf is the tag of the build that made image (an image ID), "" if no
// kept build did. A git service runs its build's image by ID (a rebuild
// keeps the tag); lists show the tag, which says what it is built from.
func (d *deployer) tagOf(image string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := len(d.builds) - 1; i >= 0; i-- {
		if b := d.builds[i]; b.imageID == image && b.Image != "" && b.Image != image {
			return b.Image
		}
	}
	return ""
}

// sourcePlan is what reconcile does for a git service after setSource:
// run image (of build; "" runs nothing new) and start a build or not.
type sourcePlan struct {
	image   string
	build   int
	restart bool // image is the last build of the source, served while checking for new commits
	deploy  bool
}

// setSource gives the deployer the declared source, poll interval,
// builder and image retention, and says what to run: the current image
// when only the service's settings changed; a build when the source
// changed or nothing was built yet.
func (d *deployer) setSource(spec builder.Spec, poll time.Duration, b Builder, keepImages int) sourcePlan {
	d.mu.Lock()
	sourceChanged := !reflect.DeepEqual(d.spec, spec) // Spec holds a map (BuildEnv)
	d.spec, d.poll, d.b, d.keepImages = spec, poll, b, keepImages
	current, running := d.current, d.running != nil
	d.mu.Unlock()
	select {
	case d.pollSet <- struct{}{}:
	default:
	}
	switch {
	case !sourceChanged && current != nil:
		return sourcePlan{image: current.imageID, build: current.ID}
	case !sourceChanged && running:
		return sourcePlan{} // the build in progress deploys with the settings just declared
	}
	plan := sourcePlan{deploy: true}
	if sourceChanged && current == nil && !running {
		// A restart: serve the last build of this same source now, while
		// the build looks for new commits (from cache; an unchanged
		// commit gives the same image and so the same revision).
		if rec := d.lastBuildOf(spec); rec != nil {
			d.mu.Lock()
			d.current = rec
			d.mu.Unlock()
			plan.image, plan.build, plan.restart = rec.imageID, rec.ID, true
			d.log.Info("serving the last build while checking the source", zap.String("service", d.name), zap.Int("build", rec.ID),
				zap.String("commit", rec.Commit))
		}
	}
	return plan
}

// webhookDeploy deploys for a verified webhook delivery unless its id or
// its body's digest was seen before.
func (d *deployer) webhookDeploy(delivery, digest string) (int, bool) {
	d.mu.Lock()
	first := d.deliveries.add(delivery, digest)
	d.mu.Unlock()
	if !first {
		return 0, true
	}
	return d.deploy("webhook"), false
}

// deliveryLog remembers recent webhook deliveries by id and by body
// digest, the last keptDeliveries at least.
type deliveryLog struct {
	seen  map[string]bool
	order []string
}

// keptDeliveries bounds the webhook deliveries a deployer remembers.
const keptDeliveries = 500

// add records a delivery and reports whether it is new: neither its id
// nor its digest was seen. An empty id is not recorded.
func (l *deliveryLog) add(delivery, digest string) bool {
	keys := []string{"body:" + digest}
	if delivery != "" {
		keys = append(keys, "id:"+delivery)
	}
	for _, k := range keys {
		if l.seen[k] {
			return false
		}
	}
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	for _, k := range keys {
		l.seen[k] = true
		l.order = append(l.order, k)
	}
	// Forget in batches, so most deliveries copy nothing: at least the
	// last keptDeliveries (two keys each) stay.
	if len(l.order) > 4*keptDeliveries {
		n := len(l.order) - 2*keptDeliveries
		for _, k := range l.order[:n] {
			delete(l.seen, k)
		}
		l.order = slices.Clone(l.order[n:])
	}
	return true
}

// deploy starts a build unless one runs; then it runs another one after.
// It returns the id of the build that will carry the current source.
func (d *deployer) deploy(trigger string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running != nil {
		d.again = true
		return d.nextID + 1
	}
	return d.startLocked(trigger).ID
}

func (d *deployer) startLocked(trigger string) *buildRecord {
	d.gw.buildStarted()
	d.nextID++
	rec := &buildRecord{BuildInfo: BuildInfo{ID: d.nextID, Status: "running", Trigger: trigger, Started: time.Now()}, changed: make(chan struct{})}
	d.running = rec
	d.builds = append(d.builds, rec)
	if len(d.builds) > keptBuilds {
		d.builds = d.builds[len(d.builds)-keptBuilds:]
	}
	d.c.buildsRunning.Add(1)
	spec, b := d.spec, d.b
	d.c.spawn(func() { d.run(rec, spec, b) })
	return rec
}

func (d *deployer) run(rec *buildRecord, spec builder.Spec, b Builder) {
	d.images <- struct{}{}
	log := d.log.With(zap.String("service", d.name), zap.Int("build", rec.ID))
	log.Info("build started", zap.String("repo", spec.URL), zap.String("ref", spec.Ref), zap.String("trigger", rec.Trigger))
	res, err := b.Build(d.ctx, spec, imageTag(d.name, spec), func(line string) {
		rec.addLine(line)
		log.Info("build output", zap.String("line", line))
	})
	if err == nil {
		// The image ID, not the tag: a rebuild of new code keeps the tag
		// but changes the ID, and with it the revision. The settings are
		// those declared now.
		if err = d.c.deployed(d, res.ImageID, rec.ID); err != nil {
			err = fmt.Errorf("the image was built but the service cannot run it: %w", err)
		}
	}
	d.mu.Lock()
	rec.Finished = time.Now()
	rec.Seconds = rec.Finished.Sub(rec.Started).Seconds()
	if res != nil {
		rec.Commit = res.Commit
	}
	if err != nil {
		rec.Status = "failed"
		rec.Reason = err.Error()
		if rec.Commit == "" {
			rec.Commit = checkedOut(rec)
		}
		backoff := failedBuildBackoff
		if f := d.failure; f != nil && f.tag == imageTag(d.name, spec) {
			backoff = min(2*f.backoff, maxFailedBuildBackoff)
		}
		d.failure = &buildFailure{tag: imageTag(d.name, spec), commit: rec.Commit, at: rec.Finished, backoff: backoff}
		if d.current != nil {
			log.Error("build failed; the running revision stays", zap.Error(err))
		} else {
			log.Error("build failed; the service has no revision to run: its requests get 503 with the reason until a build succeeds", zap.Error(err))
			d.gw.buildFailed(err.Error())
		}
	} else {
		d.failure = nil
		rec.Status = "succeeded"
		rec.Image = res.Tag
		rec.imageID = res.ImageID
		d.current = rec
		log.Info("build deployed", zap.String("image", res.Tag), zap.String("commit", res.Commit), zap.Float64("seconds", rec.Seconds))
	}
	d.running = nil
	d.c.buildsRunning.Add(-1)
	if d.again && d.ctx.Err() == nil {
		d.again = false
		d.startLocked("queued")
	}
	status := rec.Status
	took := rec.Finished.Sub(rec.Started)
	info := rec.BuildInfo
	d.mu.Unlock()
	<-d.images
	d.c.hub.Metrics.Build(d.name, status, took)
	rec.addLine(fmt.Sprintf("[build %d %s]", rec.ID, status))
	rec.finish()
	if d.ctx.Err() != nil {
		// Deleted (or Caddy stops): a deleted service's records are gone
		// from the store and must not come back with this canceled build.
		return
	}
	d.save(rec, info)
	// After a failed build too: it leaves the layers of the steps it made.
	d.c.spawn(func() { d.collectImages("build") })
}

// checkedOut is the commit a build's log says it checked out, "" if it
// did not get that far: the builder's result, which names it, comes only
// with a success.
func checkedOut(rec *buildRecord) string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, l := range rec.lines {
		if rest, ok := strings.CutPrefix(l, "==> Checked out "); ok {
			commit, _, _ := strings.Cut(rest, " ")
			if fullSHA.MatchString(commit) {
				return commit
			}
		}
	}
	return ""
}

// reconcileDeploy starts the build a config load or an API PUT asks for
// (the source changed, or nothing was built), unless the same source at
// the same commit failed to build within its backoff: every reload used
// to rebuild a broken app, minutes of build each, while other sites were
// added. A new commit builds (the ref is resolved off the controller's
// lock to know), as do a deploy, a webhook and, after the backoff, the
// next reload.
func (d *deployer) reconcileDeploy(trigger string) {
	d.mu.Lock()
	f, spec, b, busy := d.failure, d.spec, d.b, d.running != nil
	d.mu.Unlock()
	tag := imageTag(d.name, spec)
	if busy || f == nil || !f.same(tag, f.commit, time.Now()) {
		d.deploy(trigger)
		return
	}
	d.c.spawn(func() {
		ctx, cancel := context.WithTimeout(d.ctx, time.Minute)
		commit, err := b.Resolve(ctx, spec.Source)
		cancel()
		if d.ctx.Err() != nil {
			return
		}
		d.mu.Lock()
		skip := d.failure == f && (err != nil || f.same(tag, commit, time.Now()))
		first := skip && !f.logged
		if skip {
			f.logged = true
			d.skipped++
		}
		d.mu.Unlock()
		if !skip {
			d.deploy(trigger)
			return
		}
		if first {
			log := d.log.With(zap.String("service", d.name), zap.String("commit", f.commit),
				zap.Time("retry_after", f.at.Add(f.backoff)))
			if err != nil {
				log = log.With(zap.NamedError("resolve_error", err))
			}
			log.Warn("not rebuilding: the last build of this same source and commit failed; it is built again on a new commit, " +
				"on deploy (caddy podcell deploy), on a webhook, or by a reload after retry_after")
		}
	})
}

// lastBuildOf is the newest kept build of spec that succeeded and whose
// image Podman still has; nil if there is none.
func (d *deployer) lastBuildOf(spec builder.Spec) *buildRecord {
	tag := imageTag(d.name, spec)
	d.mu.Lock()
	b := d.b
	var found *buildRecord
	for _, b := range d.builds {
		if b.Status == "succeeded" && b.Image == tag && b.imageID != "" {
			found = b
		}
	}
	d.mu.Unlock()
	if found == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	if ok, err := b.ImageExists(ctx, found.imageID); err != nil || !ok {
		return nil
	}
	return found
}

// storedBuild is a finished build as the store keeps it.
type storedBuild struct {
	BuildInfo
	ImageID string   `json:"image_id,omitempty"`
	Lines   []string `json:"lines"`
	Layers  []string `json:"layers,omitempty"` // see buildRecord.layers
}

// maxStoredLines bounds a stored build log; its end, which says why a
// build failed, is what is kept.
const maxStoredLines = 2000

// save keeps a finished build in the store, so the service's build history
// and logs outlive a restart.
func (d *deployer) save(rec *buildRecord, info BuildInfo) {
	rec.mu.Lock()
	lines := rec.lines
	if n := len(lines); n > maxStoredLines {
		lines = append([]string{fmt.Sprintf("[first %d lines not kept]", n-maxStoredLines)}, lines[n-maxStoredLines:]...)
	}
	sb := storedBuild{BuildInfo: info, ImageID: rec.imageID, Lines: lines, Layers: rec.layers}
	rec.mu.Unlock() // done: nothing appends to its lines any more
	if err := d.c.st.PutBuild(d.name, info.ID, &sb, keptBuilds); err != nil {
		d.log.Warn("cannot store the build", zap.String("service", d.name), zap.Int("build", info.ID), zap.Error(err))
	}
}

// loadBuilds reads the builds an earlier run of podcell stored; new ones
// number on from them.
func (d *deployer) loadBuilds() {
	builds, err := store.Builds[storedBuild](d.c.st, d.name)
	if err != nil {
		d.log.Warn("cannot read stored builds", zap.String("service", d.name), zap.Error(err))
		return
	}
	for _, b := range builds {
		d.builds = append(d.builds, &buildRecord{BuildInfo: b.BuildInfo, imageID: b.ImageID, lines: b.Lines, layers: b.Layers,
			changed: make(chan struct{}), done: true})
		d.nextID = max(d.nextID, b.ID)
	}
}

// rollback makes image (a former build's, revision seq) the current one;
// applying the service then runs it. It refuses while a build runs, whose
// end would deploy over the rollback, and when the image was removed.
func (d *deployer) rollback(image string, build, seq int) error {
	d.mu.Lock()
	busy, b := d.running != nil, d.b
	d.mu.Unlock()
	if busy {
		return Errorf(http.StatusConflict, "rollback: a build is running; try again when it ends")
	}
	// Wait for an image collection in progress, which may remove the image.
	select {
	case d.images <- struct{}{}:
		defer func() { <-d.images }()
	case <-time.After(30 * time.Second):
		return Errorf(http.StatusConflict, "rollback: a build or an image cleanup is running; try again in a moment")
	}
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	ok, err := b.ImageExists(ctx, image)
	if err != nil {
		return Errorf(http.StatusBadGateway, "rollback: cannot ask Podman for image %s: %v", shortLayer(image), err)
	}
	if !ok {
		what := fmt.Sprintf("revision %d of %s", seq, d.name)
		if build > 0 {
			what += fmt.Sprintf(" (build %d)", build)
		}
		return Errorf(http.StatusGone, "%s ran image %s, which was removed: podcell keeps the serving image and the %d before it (keep_images); "+
			"to run that code again, deploy its commit (git revert or push it to the branch)", what, shortLayer(image), d.keepImages)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running != nil {
		return Errorf(http.StatusConflict, "rollback: a build is running; try again when it ends")
	}
	rec := &buildRecord{BuildInfo: BuildInfo{ID: build, Status: "succeeded", Trigger: "rollback", Image: image,
		Started: time.Now(), Finished: time.Now()}, imageID: image, changed: make(chan struct{}), done: true}
	for _, b := range d.builds {
		if b.imageID == image {
			rec = b
		}
	}
	d.current = rec
	return nil
}

// imageTag names a build's image by the source spec, so an unchanged
// source rebuilds (from cache) into the same tag and revision.
func imageTag(service string, spec builder.Spec) string {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %q %q %q %d", spec.URL, spec.Ref, spec.RootDir, spec.Runtime, spec.Build, spec.Start, spec.Port)
	// Written only when set, so the tags of specs without them stay.
	if spec.Install != "" {
		fmt.Fprintf(h, " install %q", spec.Install)
	}
	for _, k := range slices.Sorted(maps.Keys(spec.BuildEnv)) {
		fmt.Fprintf(h, " build_env %q=%q", k, spec.BuildEnv[k])
	}
	return "localhost/podcell-build/" + service + ":" + hex.EncodeToString(h.Sum(nil))[:12]
}

// pollLoop redeploys when the branch moved, every poll interval.
func (d *deployer) pollLoop() {
	for {
		d.mu.Lock()
		every := d.poll
		d.mu.Unlock()
		var tick <-chan time.Time
		var t *time.Timer
		if every > 0 {
			t = time.NewTimer(every)
			tick = t.C
		}
		ticked := false
		select {
		case <-d.ctx.Done():
		case <-d.pollSet:
		case <-tick:
			ticked = true
		}
		if t != nil {
			t.Stop() // not deferred: this loop runs as long as the service
		}
		if !ticked {
			if d.ctx.Err() != nil {
				return
			}
			continue // a config change: wait its interval
		}
		d.mu.Lock()
		spec, current, busy, b := d.spec, d.current, d.running != nil, d.b
		d.mu.Unlock()
		if busy {
			continue // the build running now is of the latest commit or close to it
		}
		ctx, cancel := context.WithTimeout(d.ctx, time.Minute)
		commit, err := b.Resolve(ctx, spec.Source)
		cancel()
		if err != nil {
			d.log.Warn("auto-deploy: cannot read the branch", zap.String("service", d.name), zap.Error(err))
			continue
		}
		d.mu.Lock()
		failedAlready := d.failure.same(imageTag(d.name, spec), commit, time.Now())
		d.mu.Unlock()
		if (current == nil || current.Commit != commit) && !failedAlready {
			d.deploy("poll")
		}
	}
}
