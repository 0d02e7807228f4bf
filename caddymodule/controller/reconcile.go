package controller

import (
	"errors"
	"maps"
	"reflect"
	"time"

	"go.uber.org/zap"

	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler"
)

// The desired state of a service is what its declaration says (the
// config's, or the admin API's stored spec), plus what the store adds:
// env vars set through the API, the service's cron secret and, for a git
// service, the image of its current build. The rule is simple: the config
// is the source for what it declares. The API cannot change a setting the
// config sets (it answers 409 and names the config), and a service the
// config declares shadows a stored API service of the same name.

// service is one declared service.
type service struct {
	name string
	spec ServiceSpec // as declared: the config's env, not the store's
	api  bool        // declared through the admin API (else by the config)
	// expand are the config's env names whose values are placeholders.
	expand []string
	// webhookKey verifies the service's webhooks (see Declared).
	webhookKey string
	dep        *deployer // git services
	gw         *Gateway
	// applied is the scaler config s last ran with (nil: none yet, or the
	// last apply failed): an apply of the same config leaves the scaler
	// and the revision history alone, and a reload that carries s over
	// compares its image with it (reloadLocked).
	applied *scaler.ServiceConfig
}

// newService declares a service, taking over prev's deployer (the same
// name, declared before) so a build in progress carries on, and what prev
// runs, so that applying the same config again changes nothing.
func (c *Controller) newService(name string, spec ServiceSpec, api bool, expand []string, key string, prev *service) *service {
	if len(spec.Cron) == 0 {
		spec.Cron = nil // "cron": [] declares what no cron line does
	}
	s := &service{name: name, spec: spec, api: api, expand: expand, webhookKey: key, gw: c.gatewayLocked(name)}
	if prev != nil {
		s.applied = prev.applied // what the scaler runs under the name
	}
	webhook := ""
	if spec.Git != nil {
		webhook = spec.Git.WebhookPath
	}
	s.gw.declare(spec.Config(name).QueueTimeout, webhook)
	if spec.Git != nil {
		if prev != nil && prev.dep != nil {
			s.dep, prev.dep = prev.dep, nil
		} else {
			s.dep = c.newDeployer(name, s.gw)
		}
	}
	return s
}

// retire lets go of s, which the desired state no longer holds: if no
// declaration of its name replaces it, its instances drain and go (in the
// background: a drain can last the service's drain_timeout) and its
// deployer's build is canceled.
func (c *Controller) retire(s *service, replaced bool) {
	if s.dep != nil {
		s.dep.cancel()
	}
	if replaced || c.sc.Service(s.name) == nil {
		return
	}
	if err := c.sc.RemoveInBackground(s.name); err != nil {
		c.log.Warn("cannot remove a service", zap.String("service", s.name), zap.Error(err))
	}
}

func sameSpec(a, b ServiceSpec) bool {
	if len(a.Cron) == 0 && len(b.Cron) == 0 {
		a.Cron, b.Cron = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

func sameDeclared(s *service, d Declared) bool {
	return sameSpec(s.spec, d.Spec) && reflect.DeepEqual(s.expand, d.ExpandEnv) && s.webhookKey == d.WebhookKey
}

// reconcileLocked makes the scaler run s's desired state: declared spec +
// stored env + cron secret + image. A git service's image is its current
// build's; the deployer starts a build when the source changed or nothing
// was built yet, and the build's end comes back through applyLocked.
// reason goes into the revision history.
func (c *Controller) reconcileLocked(s *service, reason string) error {
	return c.reconcile(s, reason, false)
}

// reloadLocked is reconcileLocked for a config's Start, which re-declares
// every service, most of them unchanged. A service it carries over (the
// same declaration) whose last apply succeeded runs its desired state
// already unless its image changes (a git service's deployer may pick
// another): the rest of that state is the store's env and cron secret,
// which change only through the operations, and they apply each change
// at once. So a reload of N unchanged services reads nothing from the
// store and applies nothing, instead of N store reads, scaler applies and
// revision writes (issue 13: reload time flat in the number of services).
func (c *Controller) reloadLocked(s *service, carried bool) error {
	return c.reconcile(s, "config", carried && s.applied != nil)
}

// reconcile is reconcileLocked; known says s's stored part is what its
// last apply read.
func (c *Controller) reconcile(s *service, reason string, known bool) error {
	image, build, deploy := s.spec.Image, 0, false
	if s.dep != nil {
		if c.settings.Builder == nil {
			return errors.New("git services need a builder (the Podman runtime)")
		}
		plan := s.dep.setSource(s.spec.Git.BuildSpec(s.spec.Config(s.name).Port), time.Duration(s.spec.Git.PollInterval),
			c.settings.Builder, c.settings.KeepImages)
		image, build, deploy = plan.image, plan.build, plan.deploy
		if plan.restart {
			reason = "restart"
		}
	}
	if image != "" && !(known && s.applied.Image == image) {
		if err := c.applyLocked(s, image, reason, build); err != nil {
			return err
		}
	}
	if deploy {
		trigger := "config"
		if s.api {
			trigger = "api" // declared through the admin API, not a config
		}
		s.dep.reconcileDeploy(trigger)
	}
	return nil
}

// configLocked is the scaler config s runs with image.
func (c *Controller) configLocked(s *service, image string) (scaler.ServiceConfig, error) {
	cfg := s.spec.Config(s.name)
	cfg.Image = image
	cfg.ExpandEnv = s.expand
	env, err := c.storedEnv(s.name)
	if err != nil {
		return cfg, err
	}
	// Every service gets its secret, with jobs or not: a job added through
	// the API later then needs no new revision.
	secret, err := c.st.CronSecret(s.name)
	if err != nil {
		return cfg, err
	}
	return withCronSecret(effective(cfg, env), secret), nil
}

// applyLocked runs s with image, points its gateway at the scaler's
// service and notes the revision. An apply of the config s runs already
// changes nothing.
func (c *Controller) applyLocked(s *service, image, reason string, build int) error {
	cfg, err := c.configLocked(s, image)
	if err != nil {
		s.applied = nil
		return err
	}
	if s.applied != nil && reflect.DeepEqual(*s.applied, cfg) {
		return nil
	}
	s.applied = nil
	svc, err := c.sc.Apply(cfg)
	c.applies++
	if err != nil {
		return err
	}
	s.gw.set(svc)
	c.recordRevision(cfg, reason, build)
	s.applied = &cfg
	return nil
}

// deployed runs the image a build of s's deployer d made: the build's
// end, through the same apply as every other change.
func (c *Controller) deployed(d *deployer, image string, build int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.services[d.name]
	if s == nil || s.dep != d {
		return errors.New("the service was removed while it built")
	}
	return c.applyLocked(s, image, "deploy", build)
}

// storedEnv is the env the admin API set for a service.
func (c *Controller) storedEnv(name string) (map[string]string, error) {
	rec, err := c.st.Service(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return rec.Env, err
}

// effective is the config a service runs: as declared, plus the store's
// env vars, the declared ones winning.
func effective(cfg scaler.ServiceConfig, stored map[string]string) scaler.ServiceConfig {
	if len(stored) == 0 {
		return cfg
	}
	env := make(map[string]string, len(stored)+len(cfg.Env))
	maps.Copy(env, stored)
	maps.Copy(env, cfg.Env)
	cfg.Env = env
	return cfg
}

// withCronSecret is cfg with the service's cron secret in its env.
func withCronSecret(cfg scaler.ServiceConfig, secret string) scaler.ServiceConfig {
	env := make(map[string]string, len(cfg.Env)+1)
	maps.Copy(env, cfg.Env)
	env[CronSecretEnv] = secret
	cfg.Env = env
	return cfg
}

// recordRevision notes in the store that cfg runs now, if that is new.
func (c *Controller) recordRevision(cfg scaler.ServiceConfig, reason string, build int) {
	env, err := c.storedEnv(cfg.Name)
	if err == nil {
		_, _, err = c.st.AddRevision(cfg.Name, store.Revision{ID: cfg.Revision(), Image: cfg.Image, Env: env, Reason: reason, Build: build})
	}
	if err != nil {
		c.log.Error("cannot record the revision", zap.String("service", cfg.Name), zap.Error(err))
	}
}
