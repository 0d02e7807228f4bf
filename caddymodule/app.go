package caddymodule

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/caddymodule/controller"
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
	BuildMemoryMB int                 `json:"build_memory_mb,omitempty"`
	BuildCPUs     float64             `json:"build_cpus,omitempty"`
	BuildPids     int                 `json:"build_pids,omitempty"`
	BuildTimeout  controller.Duration `json:"build_timeout,omitempty"`
	// BuildUser is the unprivileged host user builds run as, rootless, so
	// a build step's root is never host root (default "podcell"; it needs
	// subordinate ids: make setup). "root" builds as host root: unsafe.
	BuildUser string `json:"build_user,omitempty"`
	// BuildCA is a PEM file, or a directory of *.crt/*.pem files, of extra
	// CAs the install and build steps trust (a proxy that inspects TLS);
	// BuildProxy the HTTP proxy they use. See docs/deploying.md.
	BuildCA    string        `json:"build_ca,omitempty"`
	BuildProxy builder.Proxy `json:"build_proxy,omitempty"`
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
	// Standby is how far a service's standby container is prepared:
	// "initialized" (default: namespaces, network and runc's process
	// waiting to exec the app; a cold start is the app's start, about
	// 4 MB per standby) or "created" (a cold start also initializes it,
	// 0.5-0.9 s more here). StandbyIdle is how long after its last instance
	// a service keeps a standby (default 30m; -1: always, used or not).
	Standby     string         `json:"standby,omitempty"`
	StandbyIdle caddy.Duration `json:"standby_idle,omitempty"`
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
	ctrl     *controller.Controller
	pool     *pooledController
	settings controller.Settings
	// declared are the services this config's handlers declare, applied
	// by Start (a config that fails to load never changes what runs).
	mu       *sync.Mutex
	declared map[string]controller.Declared
}

func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "podcell",
		New: func() caddy.Module { return new(App) },
	}
}

// controllers keeps one controller per data dir across reloads: Caddy
// provisions the new config before it cleans up the old one, and the
// store in the data dir can be opened once. It is the only state podcell
// keeps outside a config. A controller opens its store at its first Start,
// not here: `caddy validate` provisions a config and cleans it up without
// starting it, while a server may hold the store of the same data dir.
var controllers = caddy.NewUsagePool()

// pooledController is a controller with what the admin API reads of the
// config that started it last.
type pooledController struct {
	ctrl      *controller.Controller
	dashboard atomic.Bool
	started   atomic.Int64 // unix nanoseconds of the last Start; 0: none
	made      processOptions
}

// processOptions are the global options the controller of a data dir is
// made with: it lives across reloads, so a reload that changes them
// changes nothing until Caddy restarts.
type processOptions struct {
	Podman, Owner, UserNS, Standby, KeyFile, KeyEnv string
	AllowUnenforcedLimits, KeepOnStop               bool
	BandwidthPerCoreMbit                            int
	StartupCPU, StartupCPUBudget                    float64
	StandbyIdle                                     caddy.Duration
}

func (a *App) processOptions() processOptions {
	return processOptions{Podman: a.Podman, Owner: a.Owner, UserNS: a.UserNS, Standby: a.Standby,
		KeyFile: a.EncryptionKeyFile, KeyEnv: a.EncryptionKeyEnv,
		AllowUnenforcedLimits: a.AllowUnenforcedLimits, KeepOnStop: a.KeepOnStop,
		BandwidthPerCoreMbit: a.BandwidthPerCoreMbit, StartupCPU: a.StartupCPU,
		StartupCPUBudget: a.StartupCPUBudget, StandbyIdle: a.StandbyIdle}
}

// restartOnly names the options that differ between was and now, by
// their Caddyfile names.
func restartOnly(was, now processOptions) []string {
	var names []string
	add := func(changed bool, name string) {
		if changed {
			names = append(names, name)
		}
	}
	add(was.Podman != now.Podman, "podman")
	add(was.Owner != now.Owner, "owner")
	add(was.UserNS != now.UserNS, "userns")
	add(was.Standby != now.Standby, "standby")
	add(was.StandbyIdle != now.StandbyIdle, "standby_idle")
	add(was.KeyFile != now.KeyFile || was.KeyEnv != now.KeyEnv, "encryption_key_file/encryption_key_env")
	add(was.AllowUnenforcedLimits != now.AllowUnenforcedLimits, "allow_unenforced_limits")
	add(was.KeepOnStop != now.KeepOnStop, "keep_on_stop")
	add(was.BandwidthPerCoreMbit != now.BandwidthPerCoreMbit, "bandwidth_per_core")
	add(was.StartupCPU != now.StartupCPU, "startup_cpu")
	add(was.StartupCPUBudget != now.StartupCPUBudget, "startup_cpu_budget")
	return names
}

func (p *pooledController) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return p.ctrl.Close(ctx)
}

func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.log = ctx.Logger()
	a.declared = map[string]controller.Declared{}
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
	// Here too, not only in scaler.New: a reload keeps the running
	// controller, whose scaler never sees this config's value.
	if err := scaler.CheckUserNS(a.UserNS); err != nil {
		return fmt.Errorf("podcell: %w", err)
	}
	if a.BandwidthPerCoreMbit != 0 {
		if err := scaler.CheckBandwidth("bandwidth_per_core_mbit", a.BandwidthPerCoreMbit); err != nil {
			return fmt.Errorf("podcell: %w", err)
		}
	}
	if a.StartupCPU > scaler.MaxMemoryMB/scaler.MBPerCore || (a.StartupCPU < 0 && a.StartupCPU != -1) {
		return fmt.Errorf("podcell: startup_cpu %g: use more than 0 and at most %d cores, or -1 (off)", a.StartupCPU, scaler.MaxMemoryMB/scaler.MBPerCore)
	}
	switch a.Standby {
	case "", "initialized", "created":
	default:
		return fmt.Errorf("podcell: standby %q: use initialized (the default) or created", a.Standby)
	}
	if a.StandbyIdle < 0 && a.StandbyIdle != -1 {
		return fmt.Errorf("podcell: standby_idle %s: use a positive duration such as 30m, or -1 (always)", time.Duration(a.StandbyIdle))
	}
	if a.StartupCPUBudget < 0 {
		return fmt.Errorf("podcell: startup_cpu_budget %g: use a number of cores above 0", a.StartupCPUBudget)
	}
	if a.KeepImages != nil && (*a.KeepImages < 0 || *a.KeepImages >= store.MaxRevisions) {
		return fmt.Errorf("podcell: keep_images %d: use 0 to %d (rollback reaches no further back than the %d revisions kept)",
			*a.KeepImages, store.MaxRevisions-1, store.MaxRevisions)
	}
	if a.MaxRepoMB < 0 || a.MaxRepoFiles < 0 {
		return fmt.Errorf("podcell: max_repo_mb %d, max_repo_files %d: use positive numbers, or leave them out for the defaults (1024 MiB, 200000 files)", a.MaxRepoMB, a.MaxRepoFiles)
	}
	if a.DataDir == "" {
		a.DataDir = filepath.Join(caddy.AppDataDir(), "podcell")
	}
	if err := os.MkdirAll(a.DataDir, 0o700); err != nil {
		return fmt.Errorf("podcell: data_dir %s: %w (choose a writable directory with data_dir)", a.DataDir, err)
	}
	val, loaded, err := controllers.LoadOrNew(a.DataDir, func() (caddy.Destructor, error) {
		// The store's key first: a key that is missing or malformed stops
		// the config here (caddy validate says so); one the store was not
		// made with stops the first Start, before it touches any container.
		key, err := store.LoadKey(store.KeySource{File: a.EncryptionKeyFile, Env: a.EncryptionKeyEnv}, a.DataDir, filepath.Join(a.DataDir, "store"))
		if err != nil {
			return nil, err
		}
		rt, err := scaler.NewPodman(context.Background(), a.Podman)
		if err != nil {
			return nil, err
		}
		ctrl, err := controller.New(controller.Options{
			DataDir: a.DataDir,
			Key:     key,
			Runtime: rt,
			Scaler: scaler.Options{
				Owner:                 a.Owner,
				UserNS:                a.UserNS,
				AllowUnenforcedLimits: a.AllowUnenforcedLimits,
				BandwidthPerCoreMbit:  a.BandwidthPerCoreMbit,
				KeepOnClose:           a.KeepOnStop,
				StartupCPU:            a.StartupCPU,
				StartupCPUBudget:      a.StartupCPUBudget,
				CreatedStandby:        a.Standby == "created",
				StandbyIdle:           time.Duration(a.StandbyIdle),
				Logger:                caddy.Log().Named("podcell"),
				// Only the config's env values are ever named for expansion.
				Expand: expandPlaceholders,
			},
			Logger: caddy.Log().Named("podcell"),
		})
		if err != nil {
			return nil, err
		}
		return &pooledController{ctrl: ctrl, made: a.processOptions()}, nil
	})
	if err != nil {
		return fmt.Errorf("podcell: %w", err)
	}
	a.pool = val.(*pooledController)
	if changed := restartOnly(a.pool.made, a.processOptions()); loaded && len(changed) > 0 {
		// Not an error: the rest of the config still loads. But a change
		// that silently did nothing would be worse.
		caddy.Log().Named("podcell").Warn("these podcell options changed, but the running podcell keeps the old values until Caddy restarts (caddy stop, then caddy run)",
			zap.Strings("options", changed), zap.String("data_dir", a.DataDir))
	}
	a.ctrl = a.pool.ctrl
	a.settings = controller.Settings{BuildLimits: a.buildLimits(), KeepImages: a.keepImages()}
	pm, ok := a.ctrl.Runtime().(*scaler.Podman)
	if !ok {
		return fmt.Errorf("podcell: builds need the Podman runtime")
	}
	b, err := builder.New(pm, builder.Options{
		BaseImages:   a.RuntimeImages,
		MaxBuilds:    a.BuildConcurrency,
		MaxClones:    a.BuildConcurrency,
		Limits:       a.buildLimits(),
		MaxRepoBytes: int64(a.MaxRepoMB) << 20,
		MaxRepoFiles: a.MaxRepoFiles,
		BuildUser:    a.BuildUser,
		BuildCA:      a.BuildCA,
		BuildProxy:   a.BuildProxy,
	})
	if err != nil {
		return fmt.Errorf("podcell: %w", err)
	}
	if a.BuildUser == builder.RootBuildUser {
		a.log.Warn("build_user root: builds run as host root, without a user namespace; a build step that escapes its container is root on the host")
	}
	a.settings.Builder = b
	return nil
}

// keepImages is the keep_images setting or its default.
func (a *App) keepImages() int {
	if a.KeepImages == nil {
		return controller.DefaultKeepImages
	}
	return *a.KeepImages
}

// declare registers a handler's service with this config. Two handlers
// may share a service only with identical settings.
func (a *App) declare(d controller.Declared) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.declared[d.Name]; ok {
		if !reflect.DeepEqual(prev, d) {
			return fmt.Errorf("service %s is declared twice with different settings: give one of them another name, or make them equal", d.Name)
		}
		return nil
	}
	a.declared[d.Name] = d
	return nil
}

// Start hands the config's services and settings to the controller,
// which runs them (and the services the admin API stored), removes what
// no service claims and schedules the cron jobs.
func (a *App) Start() error {
	a.mu.Lock()
	config := make([]controller.Declared, 0, len(a.declared))
	for _, d := range a.declared {
		config = append(config, d)
	}
	a.mu.Unlock()
	if err := a.ctrl.Start(a.settings, config); err != nil {
		return fmt.Errorf("podcell: %w", err)
	}
	a.pool.dashboard.Store(a.Dashboard)
	a.pool.started.Store(time.Now().UnixNano())
	h := a.ctrl.Scaler().Host()
	a.log.Info("podcell started", zap.String("podman", a.Podman), zap.String("podman_version", h.Version),
		zap.Bool("rootless", h.Rootless), zap.String("cgroup", h.CgroupVersion), zap.Int("services", len(config)),
		zap.String("store", a.ctrl.Store().Dir()))
	if a.Dashboard {
		// A browser's first visit is refused unless the admin endpoint
		// allows requests without an origin; say where to look.
		a.log.Info("dashboard on the admin endpoint at /podcell/dashboard/; a browser needs the admin origins of docs/configuration.md (Dashboard)")
	}
	return nil
}

func (a *App) Stop() error { return nil }

// Cleanup releases this config's hold on the controller; the last config
// to let go of a data dir closes it (and with it the scaler, which stops
// the instances unless keep_on_stop).
func (a *App) Cleanup() error {
	if a.ctrl == nil {
		return nil
	}
	_, err := controllers.Delete(a.DataDir)
	return err
}

// Controller is the controller this app runs services with.
func (a *App) Controller() *controller.Controller { return a.ctrl }

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

// buildLimits are the config's build limits (zero fields: the defaults).
func (a *App) buildLimits() builder.Limits {
	return builder.Limits{MemoryMB: a.BuildMemoryMB, CPUs: a.BuildCPUs, Pids: a.BuildPids, Timeout: time.Duration(a.BuildTimeout)}
}
