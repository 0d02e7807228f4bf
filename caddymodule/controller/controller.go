package controller

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/observe"
	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler"
)

// Options make a Controller. Runtime and Key are required.
type Options struct {
	// DataDir holds the store (DataDir/store).
	DataDir string
	// Key is the store's encryption key (store.LoadKey).
	Key []byte
	// Runtime runs the containers: Podman, or a fake in tests.
	Runtime scaler.Runtime
	// Scaler are the scaler's options; Observer is the controller's hub.
	Scaler scaler.Options
	Logger *zap.Logger
}

// Settings are what a config may change on a reload without making a new
// controller: the builder and its limits, and how many images rollback
// reaches. Start takes them with the config's services.
type Settings struct {
	// Builder builds git services; nil: a git service cannot run.
	Builder Builder
	// BuildLimits are the config's (zero fields: the builder's defaults);
	// a service the API declares may lower them, not raise them.
	BuildLimits builder.Limits
	// KeepImages: see DefaultKeepImages.
	KeepImages int
}

// Builder is what the controller's deployers need of the builder: build,
// resolve a branch, and list and remove images. *builder.Builder is the
// real one; the controller's tests use a fake that needs no Podman.
type Builder interface {
	Build(ctx context.Context, spec builder.Spec, tag string, logLine func(string)) (*builder.Result, error)
	Resolve(ctx context.Context, src builder.Source) (string, error)
	ImageExists(ctx context.Context, ref string) (bool, error)
	Images(ctx context.Context) ([]builder.Image, error)
	ImagesInUse(ctx context.Context) (map[string]bool, error)
	RemoveImage(ctx context.Context, id string) ([]string, error)
}

// Controller owns the desired state of one data dir's services, the
// config's and the admin API's, and everything that acts on it: the
// scaler, the store, the deployers of git services, the cron scheduler
// and the observability hub. Its methods are the operations; each turns
// the desired state of a service into the scaler's config through
// reconcileLocked. One Controller lives as long as its data dir is in use,
// across config reloads (the Caddy app keeps it in a usage pool).
type Controller struct {
	log  *zap.Logger
	opts Options
	// st, sc and cron are opened by the first Start (openLocked), under mu.
	st   *store.Store
	sc   *scaler.Scaler
	hub  *observe.Hub
	cron *cron.Scheduler
	rt   scaler.Runtime

	// mu orders every change to the desired state and to what runs: a
	// config's Start, the admin API's mutations, a build's deploy. The
	// request path never takes it.
	mu       sync.Mutex
	settings Settings
	services map[string]*service // declared: by the running config, then the store
	// gateways outlive services: a handler of a config still loading holds
	// its service's before the config starts.
	gateways map[string]*Gateway
	// routes are the declared services' gateways, for host mode and cron.
	routes  atomic.Pointer[map[string]*Gateway]
	started bool
	// applies counts the configs handed to the scaler (applyLocked).
	applies int
	// reread names the services whose stored record a reload reads again
	// (loadAPIServices).
	reread map[string]bool

	// buildsRunning counts the builds of every service.
	buildsRunning atomic.Int32
	// work counts the deployers' goroutines (builds, polls, image
	// collections), which Close waits for before it closes the store.
	work    sync.WaitGroup
	closing chan struct{} // closed by Close
}

// spawn runs f in a goroutine Close waits for.
func (c *Controller) spawn(f func()) {
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		f()
	}()
}

// New makes the controller of opts.DataDir. It opens nothing that another
// process may hold: the store (Badger locks its directory for one process),
// the scaler with its watch of Podman's events, and the cron scheduler open
// at the first Start. Caddy provisions a config and cleans it up without
// starting it to validate it, and `caddy validate` must work while a
// server runs on the same data dir.
func New(opts Options) (*Controller, error) {
	if opts.Runtime == nil {
		return nil, errors.New("a controller needs a container runtime")
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	c := &Controller{log: log, rt: opts.Runtime, opts: opts, services: map[string]*service{}, gateways: map[string]*Gateway{},
		reread: map[string]bool{}, closing: make(chan struct{})}
	c.routes.Store(&map[string]*Gateway{})
	c.hub = observe.NewHub(opts.Runtime)
	c.hub.Declared(func(name string) bool { return c.Route(name) != nil })
	return c, nil
}

// openLocked opens the store of the data dir, then starts the scaler and
// the cron scheduler, once: the first Start does, and a Start after a
// failed one tries again. A wrong key, a store another process holds or
// a newer record format stop it before it touches any container.
func (c *Controller) openLocked() error {
	if c.st != nil {
		return nil
	}
	select {
	case <-c.closing:
		return errors.New("the controller is closed")
	default:
	}
	dir := filepath.Join(c.opts.DataDir, "store")
	st, err := store.Open(dir, c.opts.Key, c.log.Named("store"))
	if err != nil {
		return err
	}
	if err := migrate(st, c.log); err != nil {
		st.Close()
		return err
	}
	so := c.opts.Scaler
	so.Observer = c.hub
	if so.Logger == nil {
		so.Logger = c.log
	}
	sc, err := scaler.New(context.Background(), c.opts.Runtime, so)
	if err != nil {
		st.Close()
		return err
	}
	c.st, c.sc = st, sc
	if c.cron, err = c.newScheduler(); err != nil {
		c.sc.Close(context.Background())
		c.st.Close()
		c.st, c.sc = nil, nil
		return err
	}
	c.hub.Watch(c.sc)
	return nil
}

// Close stops the scheduler, then the scaler (whose KeepOnClose says
// whether instances stay), the deployers' builds, the hub and the store:
// those that the first Start opened.
func (c *Controller) Close(ctx context.Context) error {
	c.mu.Lock()
	for _, s := range c.services {
		if s.dep != nil {
			s.dep.cancel()
		}
	}
	close(c.closing)
	st, sc, sched := c.st, c.sc, c.cron
	c.mu.Unlock()
	var err error
	if sched != nil {
		err = sched.Close()
	}
	// Not under mu: a build's end takes it to deploy (and fails, canceled).
	done := make(chan struct{})
	go func() { c.work.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		c.log.Warn("closing with deployer work still running", zap.Error(ctx.Err()))
	}
	if sc != nil {
		err = errors.Join(err, sc.Close(ctx))
	}
	c.hub.Close()
	if st != nil {
		err = errors.Join(err, st.Close())
	}
	return err
}

// Scaler is the scaler the controller runs services with; nil before
// the first Start.
func (c *Controller) Scaler() *scaler.Scaler { return c.sc }

// Hub is the controller's observability hub: metrics, logs, events.
func (c *Controller) Hub() *observe.Hub { return c.hub }

// Store is the controller's store; nil before the first Start.
func (c *Controller) Store() *store.Store { return c.st }

// Runtime is the container runtime the scaler uses.
func (c *Controller) Runtime() scaler.Runtime { return c.rt }

// BuildLimits are the running config's build limits, defaults filled in.
func (c *Controller) BuildLimits() builder.Limits {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.settings.BuildLimits.WithDefaults()
}

// Declared is a service as a config declares it, with what only the
// config's author may use resolved: the env values that are placeholders
// (ExpandEnv: the scaler resolves them at each container create) and the
// webhook secret (WebhookKey).
type Declared struct {
	Name       string
	Spec       ServiceSpec
	ExpandEnv  []string
	WebhookKey string
}

// Start (the first one opens the store, the scaler and the scheduler:
// openLocked) makes the config's services (and, unless the config declares
// them, the services the store holds) the desired state and reconciles
// each: new and changed ones run (rolling over those whose revision
// changed), those neither declares any more go. Then it removes
// containers no service claims and schedules every cron job. A config
// that fails to start leaves the jobs of the one running.
func (c *Controller) Start(settings Settings, config []Declared) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.openLocked(); err != nil {
		return err
	}
	c.settings = settings
	applies := c.applies
	next := map[string]*service{}
	for _, d := range config {
		s := c.services[d.Name]
		if s == nil || s.api || !sameDeclared(s, d) {
			s = c.newService(d.Name, d.Spec, false, d.ExpandEnv, d.WebhookKey, s)
		}
		next[d.Name] = s
	}
	if err := c.loadAPIServices(next); err != nil {
		return err
	}
	for name, s := range c.services {
		if next[name] != s {
			c.retire(s, next[name] != nil)
		}
	}
	prev := c.services
	c.services = next
	var errs []error
	for _, name := range sortedNames(next) {
		s := next[name]
		if err := c.reloadLocked(s, prev[name] == s); err != nil {
			if s.api {
				c.log.Error("cannot run a stored service", zap.String("service", name), zap.Error(err))
				continue
			}
			errs = append(errs, fmt.Errorf("service %s: %w", name, err))
		}
	}
	c.publishLocked()
	c.log.Info("services reconciled", zap.Int("services", len(next)), zap.Int("applied", c.applies-applies))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.sc.Reconcile(ctx); err != nil {
		c.log.Warn("could not clean up leftover containers", zap.Error(err))
	}
	c.started = true
	if err := c.syncCronLocked(); err != nil {
		return fmt.Errorf("cron: %w", err)
	}
	return nil
}

// loadAPIServices adds to next the services the admin API stored, except
// those the config declares itself. The first Start reads them from the
// store. A later one takes them from the services declared: every change
// of an API service goes through the controller, which declares it as it
// writes it, so reading and decoding every record again on each reload
// would find the same (issue 13: a reload costs the same with 1 or 1,000
// services). Only a name whose stored record the declared services may
// not show is read again: one the config stops declaring (its API service
// comes back into view) and one whose stored change could not run
// (replaceLocked).
func (c *Controller) loadAPIServices(next map[string]*service) error {
	if !c.started {
		recs, err := c.st.Services()
		if err != nil {
			return fmt.Errorf("reading services from the store: %w", err)
		}
		for _, rec := range recs {
			c.loadAPIService(next, rec)
		}
		clear(c.reread)
		return nil
	}
	for name, s := range c.services {
		switch {
		case s.api && next[name] != nil:
			c.log.Warn("the config declares a service the admin API also stored; the config wins", zap.String("service", name))
		case s.api && !c.reread[name]:
			next[name] = s
		case next[name] == nil:
			c.reread[name] = true
		}
	}
	for _, name := range sortedNames(c.reread) {
		rec, err := c.st.Service(name)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return fmt.Errorf("reading service %s from the store: %w", name, err)
		default:
			c.loadAPIService(next, rec)
		}
	}
	clear(c.reread)
	return nil
}

// loadAPIService adds to next the service of a stored record, unless it
// has no spec (env only, for a service the config declares), the config
// declares it, or it cannot be read (logged: one bad record does not stop
// the others). An unchanged service stays the one declared.
func (c *Controller) loadAPIService(next map[string]*service, rec store.Service) {
	if len(rec.Spec) == 0 {
		return
	}
	if next[rec.Name] != nil {
		c.log.Warn("the config declares a service the admin API also stored; the config wins", zap.String("service", rec.Name))
		return
	}
	spec, err := DecodeSpec(rec.Spec)
	if err == nil {
		err = spec.Validate(rec.Name)
	}
	if err != nil {
		c.log.Error("cannot read a stored service; it is not served", zap.String("service", rec.Name), zap.Error(err))
		return
	}
	s := c.services[rec.Name]
	if s == nil || !s.api || !sameSpec(s.spec, spec) {
		s = c.newService(rec.Name, spec, true, nil, webhookKey(spec), s)
	}
	next[rec.Name] = s
}

// webhookKey is the secret an API service's webhooks are verified with:
// its value as given, never a placeholder resolved.
func webhookKey(spec ServiceSpec) string {
	if spec.Git == nil {
		return ""
	}
	return spec.Git.WebhookSecret
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Gateway is the gateway of service name, made on first use: a handler
// holds it from the time its config loads, before the service runs.
func (c *Controller) Gateway(name string) *Gateway {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gatewayLocked(name)
}

func (c *Controller) gatewayLocked(name string) *Gateway {
	g := c.gateways[name]
	if g == nil {
		g = newGateway(name, c.hub.Requests(name))
		c.gateways[name] = g
	}
	return g
}

// Route is the gateway of a declared service, nil if there is none. It
// is the host-mode lookup of every request: it takes no lock.
func (c *Controller) Route(name string) *Gateway {
	return (*c.routes.Load())[name]
}

// publishLocked makes the declared services reachable by Route.
func (c *Controller) publishLocked() {
	m := make(map[string]*Gateway, len(c.services))
	for name, s := range c.services {
		m[name] = s.gw
	}
	c.routes.Store(&m)
}
