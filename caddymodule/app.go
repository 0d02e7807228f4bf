package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/observe"
	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the podcell Caddy app: it owns the connection to Podman and the
// scaler, which outlive config reloads, and applies the services that the
// config's podcell handlers declare.
type App struct {
	// Podman is the Podman API address. Default: $CONTAINER_HOST, then
	// unix:///run/podman/podman.sock.
	Podman string `json:"podman,omitempty"`
	// DataDir holds podcell's state. Default: Caddy's data directory/podcell.
	DataDir string `json:"data_dir,omitempty"`
	// Owner labels the containers of this podcell so that two podcells on
	// one host never touch each other's. Default "podcell".
	Owner string `json:"owner,omitempty"`
	// UserNS is "auto" (default: each container's root maps to its own
	// unprivileged host uid range under rootful Podman) or "host".
	UserNS string `json:"userns,omitempty"`
	// AllowUnenforcedLimits runs services even where the host cannot
	// enforce memory and CPU limits (rootless Podman on cgroup v1).
	AllowUnenforcedLimits bool `json:"allow_unenforced_limits,omitempty"`
	// BandwidthPerCoreMbit is each instance's network rate per core of
	// memory (memory_mb/1769), in Mbit/s, in each direction, unless a
	// service sets its bandwidth_mbit. Default 200. Read when the scaler
	// starts: a change takes a restart.
	BandwidthPerCoreMbit int `json:"bandwidth_per_core_mbit,omitempty"`
	// KeepOnStop leaves instances running when Caddy stops, for the next
	// start to adopt. By default they are stopped and removed.
	KeepOnStop bool `json:"keep_on_stop,omitempty"`
	// RuntimeImages overrides the base image of a builder runtime, e.g.
	// {"python3.11-debian": "localhost/podcell-runtime:python3.11-debian"}.
	RuntimeImages map[string]string `json:"runtime_images,omitempty"`
	// BuildConcurrency bounds the builds (clone and image build) running
	// at once (default 1); the others wait in one queue.
	BuildConcurrency int `json:"build_concurrency,omitempty"`
	// KeepImages is how many images of a git service's earlier builds are
	// kept besides the one serving, so rollback can reach them (newest
	// first in its revision history). Older ones are removed after each
	// build and rollback. Default 3 (DefaultKeepImages); 0 keeps only the
	// serving image.
	KeepImages *int `json:"keep_images,omitempty"`
	// BuildMemoryMB, BuildCPUs, BuildPids and BuildTimeout bound every
	// build's steps: memory (swap included), cores, processes and threads
	// at once, and the image build's wall clock. Defaults: 2048 MB, 1 core,
	// 1024, 15m. A git source can set its own.
	BuildMemoryMB int            `json:"build_memory_mb,omitempty"`
	BuildCPUs     float64        `json:"build_cpus,omitempty"`
	BuildPids     int            `json:"build_pids,omitempty"`
	BuildTimeout  caddy.Duration `json:"build_timeout,omitempty"`
	// MaxRepoMB bounds a repository a build clones, in MiB: the bytes its
	// server sends and the size of the files of the commit built (default
	// 1024). MaxRepoFiles bounds that commit's files and directories
	// (default 200000). Over either the clone stops, naming the limit.
	MaxRepoMB    int `json:"max_repo_mb,omitempty"`
	MaxRepoFiles int `json:"max_repo_files,omitempty"`
	// StartupCPU is the CPU, in cores, an instance starts with until its
	// app answers, for services that set none (default 2, at most the cores
	// it may run on; -1: off). StartupCPUBudget bounds the boost of all
	// starting instances together, in cores (default: the host's).
	StartupCPU       float64 `json:"startup_cpu,omitempty"`
	StartupCPUBudget float64 `json:"startup_cpu_budget,omitempty"`
	// EncryptionKeyFile names a file holding the store's encryption key
	// (16, 24 or 32 bytes as hex or base64). Default: data_dir/store.key, made with the store.
	EncryptionKeyFile string `json:"encryption_key_file,omitempty"`
	// EncryptionKeyEnv names an env var holding the store's key instead.
	EncryptionKeyEnv string `json:"encryption_key_env,omitempty"`
	// Dashboard serves the web dashboard on the admin API, at
	// /podcell/dashboard/. Off by default.
	Dashboard bool `json:"dashboard,omitempty"`

	ctx      caddy.Context
	log      *zap.Logger
	key      string
	sc       *scaler.Scaler
	closing  *atomic.Bool
	mu       *sync.Mutex
	services map[string]*serviceRef // declared by this config: handlers, then the store
	builder  *builder.Builder
	st       *store.Store
	stKey    string
	routes   *atomic.Pointer[map[string]*serviceRef] // services by name, for host mode
	hub      *observe.Hub                            // the scaler's: metrics, logs and error events
	cron     *cron.Scheduler                         // the store's, shared with the configs before and after
	rp       *reverseproxy.Handler                   // serves the scheduled calls
}

// serviceRef ties a handler to its service. The service is applied to the
// scaler when the app starts, after the whole config provisioned, so a
// config that fails to load never changes running services.
type serviceRef struct {
	cfg   scaler.ServiceConfig // as declared, without the store's env vars
	cron  []CronJob            // as declared, without the jobs the admin API stored
	api   *ServiceSpec         // declared through the admin API (nil: by a handler)
	src   *gitSource           // nil: cfg.Image runs as it is
	dep   *deployer            // with src
	svc   atomic.Pointer[scaler.Service]
	ready chan struct{} // closed once svc is set
	once  sync.Once
	key   string // in services and deployers
	// requests counts the service's answers (looked up once, not per request).
	requests *observe.Requests
}

// set points the ref at svc, waking requests that waited for a first one.
func (r *serviceRef) set(svc *scaler.Service) {
	r.svc.Store(svc)
	r.once.Do(func() { close(r.ready) })
}

func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "podcell",
		New: func() caddy.Module { return new(App) },
	}
}

// scalers keeps one scaler per Podman address and owner across reloads:
// Caddy provisions the new config before it cleans up the old one.
var scalers = caddy.NewUsagePool()

// services counts the configs that declare each service, so a service is
// removed only when the last config that had it is unloaded.
var services = caddy.NewUsagePool()

type pooledScaler struct {
	sc *scaler.Scaler
	// closing is set when the last config lets go of the scaler: its
	// services then go with Close (which honours keep_on_stop), not one by one.
	closing *atomic.Bool
	// hub observes the scaler, so it lives (and keeps its metrics) as long.
	hub *observe.Hub
}

func (p pooledScaler) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer p.hub.Close()
	return p.sc.Close(ctx)
}

type pooledService struct {
	sc      *scaler.Scaler
	closing *atomic.Bool
	name    string
}

// Destruct removes the service when no config and no API declares it any
// more. Its instances drain in the background: the caller holds the lock
// that reloads and the admin API's changes take (a DELETE), or is Caddy's
// reload itself, and a drain can last the service's drain_timeout.
func (p pooledService) Destruct() error {
	if p.closing.Load() {
		return nil
	}
	if p.sc.Service(p.name) == nil {
		return nil // declared by a config that never started
	}
	return p.sc.RemoveInBackground(p.name)
}

func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.log = ctx.Logger()
	a.services = map[string]*serviceRef{}
	a.routes = new(atomic.Pointer[map[string]*serviceRef])
	a.mu = new(sync.Mutex)
	if a.Podman == "" {
		a.Podman = os.Getenv("CONTAINER_HOST")
	}
	if a.Podman == "" {
		a.Podman = scaler.DefaultPodmanURI
	}
	if a.Owner == "" {
		a.Owner = "podcell"
	}
	switch a.UserNS {
	case "", "auto", "host":
	default:
		return fmt.Errorf("podcell: userns %q is not supported: use auto or host", a.UserNS)
	}
	if a.BandwidthPerCoreMbit != 0 {
		if err := scaler.CheckBandwidth("bandwidth_per_core_mbit", a.BandwidthPerCoreMbit); err != nil {
			return fmt.Errorf("podcell: %w", err)
		}
	}
	if a.StartupCPU > scaler.MaxMemoryMB/scaler.MBPerCore || (a.StartupCPU < 0 && a.StartupCPU != -1) {
		return fmt.Errorf("podcell: startup_cpu %g: use more than 0 and at most %d cores, or -1 (off)", a.StartupCPU, scaler.MaxMemoryMB/scaler.MBPerCore)
	}
	if a.StartupCPUBudget < 0 {
		return fmt.Errorf("podcell: startup_cpu_budget %g: use a number of cores above 0", a.StartupCPUBudget)
	}
	if a.KeepImages != nil && (*a.KeepImages < 0 || *a.KeepImages >= store.MaxRevisions) {
		return fmt.Errorf("podcell: keep_images %d: use 0 to %d (rollback reaches no further back than the %d revisions kept)",
			*a.KeepImages, store.MaxRevisions-1, store.MaxRevisions)
	}
	if a.DataDir == "" {
		a.DataDir = filepath.Join(caddy.AppDataDir(), "podcell")
	}
	if err := os.MkdirAll(a.DataDir, 0o700); err != nil {
		return fmt.Errorf("podcell: data_dir %s: %w (choose a writable directory with data_dir)", a.DataDir, err)
	}
	// The store first: a wrong key must stop the config before it touches
	// any container.
	if err := a.openStore(); err != nil {
		return fmt.Errorf("podcell: %w", err)
	}
	a.key = a.Podman + "|" + a.Owner
	val, _, err := scalers.LoadOrNew(a.key, func() (caddy.Destructor, error) {
		rt, err := scaler.NewPodman(context.Background(), a.Podman)
		if err != nil {
			return nil, err
		}
		hub := observe.NewHub(rt)
		sc, err := scaler.New(context.Background(), rt, scaler.Options{
			Owner:                 a.Owner,
			UserNS:                a.UserNS,
			AllowUnenforcedLimits: a.AllowUnenforcedLimits,
			BandwidthPerCoreMbit:  a.BandwidthPerCoreMbit,
			KeepOnClose:           a.KeepOnStop,
			StartupCPU:            a.StartupCPU,
			StartupCPUBudget:      a.StartupCPUBudget,
			Logger:                caddy.Log().Named("podcell"),
			Observer:              hub,
			// Only the config's env values are ever named for expansion.
			Expand: expandPlaceholders,
		})
		if err != nil {
			return nil, err
		}
		hub.Watch(sc)
		return pooledScaler{sc: sc, closing: new(atomic.Bool), hub: hub}, nil
	})
	if err != nil {
		stores.Delete(a.stKey)
		a.st = nil
		return fmt.Errorf("podcell: %w", err)
	}
	a.sc = val.(pooledScaler).sc
	a.closing = val.(pooledScaler).closing
	a.hub = val.(pooledScaler).hub
	pm, ok := a.sc.Runtime().(*scaler.Podman)
	if !ok {
		return fmt.Errorf("podcell: builds need the Podman runtime")
	}
	if a.MaxRepoMB < 0 || a.MaxRepoFiles < 0 {
		return fmt.Errorf("podcell: max_repo_mb %d, max_repo_files %d: use positive numbers, or leave them out for the defaults (1024 MiB, 200000 files)", a.MaxRepoMB, a.MaxRepoFiles)
	}
	if a.builder, err = builder.New(pm, builder.Options{
		BaseImages:   a.RuntimeImages,
		MaxBuilds:    a.BuildConcurrency,
		MaxClones:    a.BuildConcurrency,
		Limits:       a.buildLimits(),
		MaxRepoBytes: int64(a.MaxRepoMB) << 20,
		MaxRepoFiles: a.MaxRepoFiles,
	}); err != nil {
		return fmt.Errorf("podcell: %w", err)
	}
	if err := a.openScheduler(); err != nil {
		return fmt.Errorf("podcell: cron: %w", err)
	}
	rp := newProxy(0)
	if err := rp.Provision(ctx); err != nil {
		return fmt.Errorf("podcell: %w", err)
	}
	a.rp = rp
	return nil
}

// keepImages is the keep_images setting or its default.
func (a *App) keepImages() int {
	if a.KeepImages == nil {
		return DefaultKeepImages
	}
	return *a.KeepImages
}

// declare registers a handler's service with this config. Two handlers
// may share a service only with identical settings.
func (a *App) declare(cfg scaler.ServiceConfig, src *gitSource, jobs []CronJob) (*serviceRef, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.declareLocked(cfg, src, jobs, nil)
}

func (a *App) declareLocked(cfg scaler.ServiceConfig, src *gitSource, jobs []CronJob, api *ServiceSpec) (*serviceRef, error) {
	if len(jobs) == 0 {
		jobs = nil // "cron": [] declares what no cron line does
	}
	if ref := a.services[cfg.Name]; ref != nil {
		if !sameConfig(ref.cfg, cfg) || !sameSource(ref.src, src) || !reflect.DeepEqual(ref.cron, jobs) {
			return nil, fmt.Errorf("service %s is declared twice with different settings: give one of them another name, or make them equal", cfg.Name)
		}
		return ref, nil
	}
	ref := &serviceRef{cfg: cfg, cron: jobs, src: src, api: api, ready: make(chan struct{}), key: a.key + "|" + cfg.Name,
		requests: a.hub.Requests(cfg.Name)}
	if _, _, err := services.LoadOrNew(ref.key, func() (caddy.Destructor, error) {
		return pooledService{sc: a.sc, closing: a.closing, name: cfg.Name}, nil
	}); err != nil {
		return nil, err
	}
	if src != nil {
		d, err := a.loadDeployer(ref)
		if err != nil {
			return nil, err
		}
		ref.dep = d
	}
	// During a reload the service may already run: serve with it until
	// Start applies the new settings.
	if svc := a.sc.Service(cfg.Name); svc != nil {
		ref.set(svc)
	}
	a.services[cfg.Name] = ref
	return ref, nil
}

// sameConfig: every setting equal, so two handlers can share the service.
func sameConfig(a, b scaler.ServiceConfig) bool { return reflect.DeepEqual(a, b) }

// Start applies the declared services (rolling over those whose revision
// changed), adds the services declared through the admin API, removes
// containers that no service claims, and then schedules the services'
// cron jobs.
func (a *App) Start() error {
	defer a.lockChanges()()
	for name, ref := range a.services {
		if err := a.applyRef(ref, "config"); err != nil {
			return fmt.Errorf("podcell: service %s: %w", name, err)
		}
	}
	if err := a.loadAPIServices(); err != nil {
		return fmt.Errorf("podcell: %w", err)
	}
	a.publishRoutesLocked()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.sc.Reconcile(ctx); err != nil {
		a.log.Warn("could not clean up leftover containers", zap.Error(err))
	}
	current.Store(a)
	// Last: a config that fails to start leaves the jobs of the one
	// running. Jobs this config keeps unchanged carry on as they were.
	if err := a.syncCronLocked(); err != nil {
		return fmt.Errorf("podcell: cron: %w", err)
	}
	h := a.sc.Host()
	a.log.Info("podcell started", zap.String("podman", a.Podman), zap.String("podman_version", h.Version),
		zap.Bool("rootless", h.Rootless), zap.String("cgroup", h.CgroupVersion), zap.Int("services", len(a.services)),
		zap.String("store", a.st.Dir()))
	if a.Dashboard {
		// A browser's first visit is refused unless the admin endpoint
		// allows requests without an origin; say where to look.
		a.log.Info("dashboard on the admin endpoint at /podcell/dashboard/; a browser needs the admin origins of docs/configuration.md (Dashboard)")
	}
	return nil
}

func (a *App) Stop() error { return nil }

// Cleanup releases this config's hold on its services and the scaler; the
// last config to let go of a service removes its instances.
func (a *App) Cleanup() error {
	if a.sc == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	current.CompareAndSwap(a, nil)
	var err error
	// Before the store and the scaler: the last config to go stops the
	// scheduler, whose runs in progress still use them.
	if a.cron != nil {
		_, err = schedulers.Delete(a.stKey)
	}
	if a.rp != nil {
		err = errors.Join(err, a.rp.Cleanup())
	}
	if n, _ := scalers.References(a.key); n <= 1 {
		a.closing.Store(true)
	}
	for _, ref := range a.services {
		services.Delete(ref.key)
		if ref.src != nil {
			deployers.Delete(ref.key)
		}
	}
	_, serr := scalers.Delete(a.key)
	err = errors.Join(err, serr)
	if a.st != nil {
		if _, serr := stores.Delete(a.stKey); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	return err
}

// Scaler is the scaler this app runs services with.
func (a *App) Scaler() *scaler.Scaler { return a.sc }

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

// buildLimits are the config's build limits (zero fields: the defaults).
func (a *App) buildLimits() builder.Limits {
	return builder.Limits{MemoryMB: a.BuildMemoryMB, CPUs: a.BuildCPUs, Pids: a.BuildPids, Timeout: time.Duration(a.BuildTimeout)}
}
