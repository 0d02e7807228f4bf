package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler"
)

// The operations of the admin API. Each is validated in full before
// anything is written; the store is written before the scaler is told
// (through reconcileLocked), so a failed write changes nothing. Errors
// are *Error, with the HTTP status the API answers.

// serviceLocked finds a declared service.
func (c *Controller) serviceLocked(name string) (*service, error) {
	if !c.started {
		return nil, Errorf(http.StatusServiceUnavailable, "podcell is not running: load a config with a podcell app first")
	}
	s := c.services[name]
	if s == nil {
		return nil, Errorf(http.StatusNotFound, "service %q does not exist", name)
	}
	return s, nil
}

// storeError passes on an *Error raised inside a store update (a
// validation) and reports any other failure as the store's.
func storeError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return Errorf(http.StatusInternalServerError, "store: %v", err)
}

// DecodeSpec reads a service's settings; an unknown field is an error so
// that a typo does not silently fall back to a default.
func DecodeSpec(b []byte) (ServiceSpec, error) {
	var spec ServiceSpec
	if err := DecodeStrict(b, &spec); err != nil {
		return spec, fmt.Errorf("body: %v (send the service's settings as the podcell handler's JSON, e.g. {\"image\": \"localhost/hello:latest\", \"memory_mb\": 256})", err)
	}
	return spec, nil
}

// DecodeStrict reads one JSON value into v: an unknown field is an error,
// so a typo does not silently fall back to a default; so is anything after
// the value.
func DecodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("one JSON value expected, found more after it")
	}
	return nil
}

// Put declares (created) or changes a service through the API. Its env
// vars and cron jobs join the store's, where the env and cron operations
// manage them.
func (c *Controller) Put(name string, spec ServiceSpec) (st ServiceStatus, created bool, err error) {
	if err := spec.Validate(name); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return st, false, err
		}
		return st, false, Errorf(http.StatusBadRequest, "%v", err)
	}
	if err := scaler.CheckServiceBandwidth("bandwidth_mbit", spec.BandwidthMbit, c.opts.Scaler.BandwidthPerCoreMbit); err != nil {
		return st, false, Errorf(http.StatusBadRequest, "%v", err)
	}
	if spec.Git != nil {
		if err := spec.Git.BuildSpec(8080).Limits.Within(c.BuildLimits()); err != nil {
			return st, false, Errorf(http.StatusBadRequest, "%v", err)
		}
	}
	for _, w := range spec.Warnings(name) {
		c.log.Warn(w)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		return st, false, Errorf(http.StatusServiceUnavailable, "podcell is not running: load a config with a podcell app first")
	}
	old := c.services[name]
	if old != nil && !old.api {
		return st, false, Errorf(http.StatusConflict, "service %s is declared in the config (Caddyfile): change it there; the API can set its env vars", name)
	}
	env, jobs := spec.Env, spec.Cron
	spec.Env, spec.Cron = nil, nil
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return st, false, err
	}
	if _, err := c.st.UpdateService(name, func(s *store.Service) error {
		s.Spec = specJSON
		if len(env) > 0 && s.Env == nil {
			s.Env = map[string]string{}
		}
		for k, v := range env {
			s.Env[k] = v
		}
		return checkEnvTotal(s.Env)
	}); err != nil {
		return st, false, storeError(err)
	}
	c.reread[name] = true // until replaceLocked declares what is stored
	for _, cj := range jobs {
		cj.Name = cj.For(name).Name
		if err := c.st.PutCronJob(name, cj.Name, cj); err != nil {
			return st, false, storeError(err)
		}
	}
	if err := c.replaceLocked(name, spec, old, "api"); err != nil {
		return st, false, Errorf(http.StatusInternalServerError, "service %s was stored but cannot run: %v", name, err)
	}
	if err := c.syncCronLocked(); err != nil {
		return st, false, Errorf(http.StatusInternalServerError, "service %s runs but its cron jobs are not scheduled: %v", name, err)
	}
	return c.statusLocked(name), old == nil, nil
}

// replaceLocked declares an API service with spec in place of old (nil:
// none) and reconciles it. The running instances stay and roll over only
// if the revision changed; on failure old stays declared.
func (c *Controller) replaceLocked(name string, spec ServiceSpec, old *service, reason string) error {
	s := c.newService(name, spec, true, nil, webhookKey(spec), old)
	c.services[name] = s
	err := c.reconcileLocked(s, reason)
	if err == nil {
		delete(c.reread, name)
	} else {
		c.reread[name] = true // stored, not declared: a reload reads it again
	}
	switch {
	case err != nil && old != nil:
		if s.dep != nil && old.dep == nil && old.spec.Git != nil {
			old.dep, s.dep = s.dep, nil // hand the deployer back
		}
		c.services[name] = old
	case err == nil && old != nil:
		c.retire(old, true)
	}
	if s.dep != nil && c.services[name] != s {
		s.dep.cancel()
	}
	c.publishLocked()
	return err
}

// Delete removes a service the API declared, with its env vars,
// revisions, cron jobs, build records and (in the background) the images
// and build layers of its builds.
func (c *Controller) Delete(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.serviceLocked(name)
	if err != nil {
		return err
	}
	if !s.api {
		return Errorf(http.StatusConflict, "service %s is declared in the config (Caddyfile): remove it there", name)
	}
	// The layers its builds made, from the build records about to go.
	var layers []madeLayer
	if s.dep != nil {
		s.dep.mu.Lock()
		for _, b := range s.dep.builds {
			layers = append(layers, b.madeLayers()...)
		}
		s.dep.mu.Unlock()
	}
	if err := c.st.DeleteService(name); err != nil {
		return storeError(err)
	}
	delete(c.services, name)
	c.publishLocked()
	if err := c.syncCronLocked(); err != nil {
		c.log.Error("cannot unschedule the cron jobs of a deleted service", zap.String("service", name), zap.Error(err))
	}
	c.retire(s, false)
	if s.dep != nil {
		// The deployer's build is canceled; then its images go, off this
		// request.
		dep := s.dep
		c.spawn(func() { dep.removeAllImages(layers) })
	}
	return nil
}

// EnvVar is one env var as the API shows it.
type EnvVar struct {
	Name   string `json:"name"`
	Source string `json:"source"`          // "api" or "config"
	Value  string `json:"value,omitempty"` // only with reveal
}

// EnvList is a service's env.
type EnvList struct {
	Service  string   `json:"service"`
	Env      []EnvVar `json:"env"`
	Revealed bool     `json:"revealed"`
	// Revision is the store's newest revision of the service after a change.
	Revision int `json:"revision,omitempty"`
}

// Env lists a service's env vars: the declaration's and the API's; their
// values only with reveal.
func (c *Controller) Env(name string, reveal bool) (EnvList, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.serviceLocked(name)
	if err != nil {
		return EnvList{}, err
	}
	return c.envListLocked(s, reveal)
}

func (c *Controller) envListLocked(s *service, reveal bool) (EnvList, error) {
	stored, err := c.storedEnv(s.name)
	if err != nil {
		return EnvList{}, storeError(err)
	}
	list := EnvList{Service: s.name, Env: []EnvVar{}, Revealed: reveal}
	add := func(env map[string]string, source string) {
		for k, v := range env {
			if source == "api" {
				if _, shadowed := s.spec.Env[k]; shadowed {
					continue
				}
			}
			ev := EnvVar{Name: k, Source: source}
			if reveal {
				ev.Value = v
			}
			list.Env = append(list.Env, ev)
		}
	}
	add(s.spec.Env, "config")
	add(stored, "api")
	sort.Slice(list.Env, func(i, j int) bool { return list.Env[i].Name < list.Env[j].Name })
	return list, nil
}

// SetEnv changes a service's API env vars (a nil value unsets) and rolls
// the service over to them: a new revision starts instances with the new
// env, shifts traffic to them as they are ready and drains the old ones.
func (c *Controller) SetEnv(name string, changes map[string]*string) (EnvList, error) {
	if len(changes) == 0 {
		return EnvList{}, Errorf(http.StatusBadRequest, "body: the object names no env var")
	}
	set := map[string]string{}
	for k, v := range changes {
		if err := CheckEnvName(k); err != nil {
			return EnvList{}, err
		}
		if v != nil {
			set[k] = *v
		}
	}
	if err := CheckEnv(set); err != nil {
		return EnvList{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.serviceLocked(name)
	if err != nil {
		return EnvList{}, err
	}
	var names []string
	for k := range changes {
		if _, ok := s.spec.Env[k]; ok {
			names = append(names, k)
		}
	}
	if len(names) > 0 {
		sort.Strings(names)
		return EnvList{}, Errorf(http.StatusConflict, "env %s: set in the config (Caddyfile), which wins over the API: change it there", strings.Join(names, ", "))
	}
	var missing []string
	_, err = c.st.UpdateService(name, func(rec *store.Service) error {
		missing = missing[:0]
		if rec.Env == nil {
			rec.Env = map[string]string{}
		}
		for k, v := range changes {
			if v == nil {
				if _, ok := rec.Env[k]; !ok {
					missing = append(missing, k)
				}
				delete(rec.Env, k)
				continue
			}
			rec.Env[k] = *v
		}
		if len(missing) == len(changes) {
			// Nothing to change: don't write, don't roll over.
			return Errorf(http.StatusNotFound, "env %s: not set through the API", strings.Join(missing, ", "))
		}
		if err := checkEnvTotal(rec.Env); err != nil {
			return err
		}
		// The whole spec must still be valid before anything is written.
		spec := s.spec
		spec.Env = effective(scaler.ServiceConfig{Env: s.spec.Env}, rec.Env).Env
		if err := spec.Validate(name); err != nil {
			return Errorf(http.StatusBadRequest, "%v", err)
		}
		return nil
	})
	if err != nil {
		return EnvList{}, storeError(err)
	}
	if err := c.reconcileLocked(s, "env"); err != nil {
		return EnvList{}, Errorf(http.StatusInternalServerError, "env of %s was stored but the service cannot apply it: %v", name, err)
	}
	list, err := c.envListLocked(s, false)
	if err != nil {
		return list, err
	}
	if revs, err := c.st.Revisions(name); err == nil && len(revs) > 0 {
		list.Revision = revs[len(revs)-1].Seq
	}
	return list, nil
}

// RevisionInfo is a revision as the API shows it: env names, not values.
type RevisionInfo struct {
	Seq int    `json:"seq"`
	ID  string `json:"id"`
	// Image is a git service's build by its tag, when a kept build made
	// it (ImageID is the image itself), else the image as run.
	Image   string   `json:"image"`
	ImageID string   `json:"image_id,omitempty"`
	Env     []string `json:"env"`
	Reason  string   `json:"reason"`
	Build   int      `json:"build,omitempty"`
	Created string   `json:"created"`
	Current bool     `json:"current"`
}

// Revisions lists a service's kept revisions, newest first.
func (c *Controller) Revisions(name string) ([]RevisionInfo, error) {
	c.mu.Lock()
	s, err := c.serviceLocked(name)
	var dep *deployer
	if s != nil {
		dep = s.dep // under mu: a redeclaration moves it
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	revs, err := c.st.Revisions(name)
	if err != nil {
		return nil, storeError(err)
	}
	running := ""
	if svc := s.gw.svc.Load(); svc != nil {
		running = svc.Snapshot().Revision
	}
	out := []RevisionInfo{}
	for i := len(revs) - 1; i >= 0; i-- {
		rv := revs[i]
		info := RevisionInfo{Seq: rv.Seq, ID: rv.ID, Image: rv.Image, Env: []string{}, Reason: rv.Reason, Build: rv.Build,
			Created: rv.Created.Format(time.RFC3339), Current: rv.ID == running && i == len(revs)-1}
		if dep != nil {
			if tag := dep.tagOf(rv.Image); tag != "" {
				info.Image, info.ImageID = tag, rv.Image
			}
		}
		for k := range rv.Env {
			info.Env = append(info.Env, k)
		}
		sort.Strings(info.Env)
		out = append(out, info)
	}
	return out, nil
}

// Rollback runs an earlier revision again: its image and its API env.
// seq 0 means the newest revision that differs from the current one.
func (c *Controller) Rollback(name string, seq int) (ServiceStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.serviceLocked(name)
	if err != nil {
		return ServiceStatus{}, err
	}
	revs, err := c.st.Revisions(name)
	if err != nil {
		return ServiceStatus{}, storeError(err)
	}
	var target *store.Revision
	if seq == 0 {
		if len(revs) > 0 {
			last := revs[len(revs)-1]
			for i := len(revs) - 2; i >= 0; i-- {
				if revs[i].ID != last.ID {
					target = &revs[i]
					break
				}
			}
		}
		if target == nil {
			return ServiceStatus{}, Errorf(http.StatusConflict, "service %s has no earlier revision to roll back to", name)
		}
	} else {
		for i := range revs {
			if revs[i].Seq == seq {
				target = &revs[i]
			}
		}
		if target == nil {
			return ServiceStatus{}, Errorf(http.StatusNotFound, "revision %d of %s is not kept (see GET /podcell/services/%s/revisions)", seq, name, name)
		}
	}
	// Names the declaration sets win anyway; the rest of the env comes back.
	env := map[string]string{}
	for k, v := range target.Env {
		if _, declared := s.spec.Env[k]; !declared {
			env[k] = v
		}
	}
	// The target's image comes back where the service's image comes from:
	// a git service's deployer, an API service's stored spec. A config's
	// image is the config's, which the API cannot change.
	spec := s.spec
	switch {
	case s.dep != nil:
		if err := s.dep.rollback(target.Image, target.Build, target.Seq); err != nil {
			return ServiceStatus{}, err
		}
	case s.api:
		spec.Image = target.Image
	case target.Image != s.spec.Image:
		return ServiceStatus{}, Errorf(http.StatusConflict, "revision %d ran image %s but the config sets image %s: change the image in the config", target.Seq, target.Image, s.spec.Image)
	}
	var specJSON json.RawMessage
	if !sameSpec(spec, s.spec) {
		if specJSON, err = json.Marshal(spec); err != nil {
			return ServiceStatus{}, err
		}
	}
	if _, err := c.st.UpdateService(name, func(rec *store.Service) error {
		if specJSON != nil {
			rec.Spec = specJSON
		}
		rec.Env = env
		return nil
	}); err != nil {
		return ServiceStatus{}, storeError(err)
	}
	if specJSON != nil {
		err = c.replaceLocked(name, spec, s, "rollback") // a new declaration
	} else {
		err = c.reconcileLocked(s, "rollback")
	}
	if err != nil {
		return ServiceStatus{}, Errorf(http.StatusInternalServerError, "rollback of %s: %v", name, err)
	}
	if s.dep != nil {
		// The rollback moved the window of images rollback can reach.
		dep := s.dep
		c.spawn(func() { dep.collectImages("rollback") })
	}
	return c.statusLocked(name), nil
}

// deployerOf is the deployer of a git service, or an error that says why
// there is none.
func (c *Controller) deployerOf(name string) (*deployer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.serviceLocked(name)
	if err != nil {
		return nil, err
	}
	if s.dep == nil {
		return nil, Errorf(http.StatusConflict, "service %q runs an image, not a git source: there is nothing to build", name)
	}
	return s.dep, nil
}

// Deploy builds a git service's source and deploys it; it returns the id
// of the build that will carry the current source (a build already
// running is followed by another).
func (c *Controller) Deploy(name string) (int, error) {
	d, err := c.deployerOf(name)
	if err != nil {
		return 0, err
	}
	return d.deploy("api"), nil
}

// Builds lists a git service's kept builds, newest first.
func (c *Controller) Builds(name string) ([]BuildInfo, error) {
	d, err := c.deployerOf(name)
	if err != nil {
		return nil, err
	}
	return d.status().Builds, nil
}

// BuildLog is a build's log, which grows while the build runs.
type BuildLog struct{ rec *buildRecord }

// From returns the lines from index i on, whether the build is done, and
// a channel closed when there is more.
func (l BuildLog) From(i int) ([]string, bool, <-chan struct{}) { return l.rec.linesFrom(i) }

// Log is the log of build id of a git service.
func (c *Controller) Log(name string, id int) (BuildLog, error) {
	d, err := c.deployerOf(name)
	if err != nil {
		return BuildLog{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, b := range d.builds {
		if b.ID == id {
			return BuildLog{b}, nil
		}
	}
	return BuildLog{}, Errorf(http.StatusNotFound, "build %d of %s is not kept (the last %d are)", id, name, keptBuilds)
}

// ServiceStatus is a service's live state as the admin API reports it.
type ServiceStatus struct {
	Name string `json:"name"`
	// Source says who declared the service: "config" (Caddyfile or JSON
	// config) or "api".
	Source string `json:"source,omitempty"`
	// State is serving once a revision runs (its instances start on
	// demand); before that, building (the first build runs),
	// build_failed (Error says why) or no_revision.
	State string `json:"state"`
	// Error is why the last build failed, while the service has no
	// revision (state build_failed).
	Error string `json:"error,omitempty"`
	// Image is what the service runs: a git service's build by its tag
	// (ImageID is the image itself: a rebuild keeps the tag).
	Image     string                    `json:"image"`
	ImageID   string                    `json:"image_id,omitempty"`
	Revision  string                    `json:"revision"`
	Inflight  int                       `json:"inflight"`
	Queued    int                       `json:"queued"`
	States    map[string]int            `json:"states"`
	Instances []scaler.InstanceSnapshot `json:"instances"`
	Stats     map[string]int64          `json:"stats"`
	Deploy    *DeployStatus             `json:"deploy,omitempty"`
}

func statusOf(svc *scaler.Service) ServiceStatus {
	snap := svc.Snapshot()
	st := ServiceStatus{
		Name: snap.Name, Image: svc.Config().Image, Revision: snap.Revision,
		Inflight: snap.Inflight, Queued: snap.Queued, States: map[string]int{},
		Instances: snap.Instances,
		Stats: map[string]int64{
			"cold_starts": svc.Stats.ColdStarts.Load(), "resumes": svc.Stats.Resumes.Load(),
			"start_failures": svc.Stats.StartFails.Load(), "crashes": svc.Stats.Crashes.Load(),
			"oom_kills": svc.Stats.OOMKills.Load(), "pauses": svc.Stats.Pauses.Load(),
			"stops": svc.Stats.Stops.Load(), "queue_full": svc.Stats.QueueFull.Load(),
			"queue_timeouts": svc.Stats.QueueTimeout.Load(),
		},
	}
	if st.Instances == nil {
		st.Instances = []scaler.InstanceSnapshot{}
	}
	for _, i := range snap.Instances {
		st.States[i.State]++
	}
	return st
}

// statusLocked is a service's live state, or its bare name before it runs.
func (c *Controller) statusLocked(name string) ServiceStatus {
	st := ServiceStatus{Name: name, State: StateNoRevision, States: map[string]int{}, Instances: []scaler.InstanceSnapshot{}}
	if svc := c.sc.Service(name); svc != nil {
		st = statusOf(svc)
		st.State = StateServing
	}
	if s := c.services[name]; s != nil {
		st.Source = "config"
		if s.api {
			st.Source = "api"
		}
		st.State, st.Error = s.gw.state()
		if s.dep != nil {
			st.Deploy = s.dep.status()
			if tag := s.dep.tagOf(st.Image); tag != "" {
				st.Image, st.ImageID = tag, st.Image
			}
		}
	}
	return st
}

// Status is a declared or running service's live state.
func (c *Controller) Status(name string) (ServiceStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		return ServiceStatus{}, Errorf(http.StatusServiceUnavailable, "podcell is not running: load a config with a podcell app first")
	}
	if c.services[name] == nil && c.sc.Service(name) == nil {
		return ServiceStatus{}, Errorf(http.StatusNotFound, "service %q does not exist", name)
	}
	return c.statusLocked(name), nil
}

// Services is the live state of every service, by name: those declared,
// whether a revision runs yet or not (a git service whose first build
// runs or failed is listed with its state), and those the scaler still
// runs (draining after their removal).
func (c *Controller) Services() []ServiceStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []ServiceStatus{}
	if c.sc == nil {
		return out // before the first Start
	}
	names := map[string]bool{}
	for name := range c.services {
		names[name] = true
	}
	for _, svc := range c.sc.Services() {
		names[svc.Name()] = true
	}
	for _, name := range sortedNames(names) {
		out = append(out, c.statusLocked(name))
	}
	return out
}

// CronJobStatus is a job as the API shows it.
type CronJobStatus struct {
	cron.Job        // the definition, defaults filled in
	Service  string `json:"service"`
	// Source says who declared the job: "config" or "api".
	Source  string     `json:"source"`
	Next    *time.Time `json:"next,omitempty"`
	LastRun *cron.Run  `json:"last_run,omitempty"`
}

func (c *Controller) cronStatus(e cronEntry) CronJobStatus {
	st := CronJobStatus{Job: e.job, Service: e.job.Service, Source: e.source}
	if next, ok := c.cron.Next(e.job.Service, e.job.Name); ok {
		st.Next = &next
	}
	if runs := c.cron.History(e.job.Service, e.job.Name); len(runs) > 0 {
		st.LastRun = &runs[len(runs)-1]
	}
	return st
}

// CronJobs lists a service's jobs with their next fire time and last run.
func (c *Controller) CronJobs(service string) ([]CronJobStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.serviceLocked(service)
	if err != nil {
		return nil, err
	}
	out := []CronJobStatus{}
	for _, e := range c.cronJobsLocked(s) {
		out = append(out, c.cronStatus(e))
	}
	return out, nil
}

// cronJob finds a job of a declared service.
func (c *Controller) cronJob(service, job string) (cronEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.serviceLocked(service)
	if err != nil {
		return cronEntry{}, err
	}
	for _, e := range c.cronJobsLocked(s) {
		if e.job.Name == job {
			return e, nil
		}
	}
	return cronEntry{}, Errorf(http.StatusNotFound, "cron job %q of service %s does not exist (see GET /podcell/services/%s/cron)", job, service, service)
}

// CronJob is one job's state.
func (c *Controller) CronJob(service, job string) (CronJobStatus, error) {
	e, err := c.cronJob(service, job)
	if err != nil {
		return CronJobStatus{}, err
	}
	return c.cronStatus(e), nil
}

// CronRuns are a job's recent runs, newest first.
func (c *Controller) CronRuns(service, job string) ([]cron.Run, error) {
	if _, err := c.cronJob(service, job); err != nil {
		return nil, err
	}
	runs := c.cron.History(service, job)
	out := make([]cron.Run, 0, len(runs))
	for i := len(runs) - 1; i >= 0; i-- {
		out = append(out, runs[i])
	}
	return out, nil
}

// RunJob runs a job now, off its schedule.
func (c *Controller) RunJob(service, job string) error {
	if _, err := c.cronJob(service, job); err != nil {
		return err
	}
	if err := c.cron.Trigger(service, job); err != nil {
		return Errorf(http.StatusConflict, "%v", err)
	}
	return nil
}

// PutCronJob adds (created) or changes a job the API declares. As with
// env vars, the config wins: the API cannot change a job it declares.
func (c *Controller) PutCronJob(service, name string, cj cron.Job) (st CronJobStatus, created bool, err error) {
	if cj.Name != "" && cj.Name != name {
		return st, false, Errorf(http.StatusBadRequest, "name %q in the body differs from %q in the path: leave it out or make them equal", cj.Name, name)
	}
	cj.Name = name
	if err := cj.For(service).Validate(); err != nil {
		return st, false, Errorf(http.StatusBadRequest, "%v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.serviceLocked(service)
	if err != nil {
		return st, false, err
	}
	existed := false
	for _, e := range c.cronJobsLocked(s) {
		if e.job.Name != name {
			continue
		}
		if e.source == "config" {
			return st, false, Errorf(http.StatusConflict, "cron job %q of service %s is declared in the config (Caddyfile): change it there", name, service)
		}
		existed = true
	}
	if err := c.st.PutCronJob(service, name, cj); err != nil {
		return st, false, storeError(err)
	}
	if err := c.syncCronLocked(); err != nil {
		return st, false, Errorf(http.StatusInternalServerError, "cron job %q of service %s was stored but is not scheduled: %v", name, service, err)
	}
	return c.cronStatus(cronEntry{cj.For(service), "api"}), !existed, nil
}

// DeleteCronJob removes a job the API declared, with its history.
func (c *Controller) DeleteCronJob(service, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.serviceLocked(service)
	if err != nil {
		return err
	}
	for _, cj := range s.spec.Cron {
		if cj.For(service).Name == name {
			return Errorf(http.StatusConflict, "cron job %q of service %s is declared in the config (Caddyfile): remove it there", name, service)
		}
	}
	if err := c.st.DeleteCronJob(service, name); errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusNotFound, "cron job %q of service %s was not added through the API", name, service)
	} else if err != nil {
		return storeError(err)
	}
	if err := c.syncCronLocked(); err != nil {
		return Errorf(http.StatusInternalServerError, "cron job %q of service %s was deleted but may still fire until the next reload: %v", name, service, err)
	}
	return nil
}
