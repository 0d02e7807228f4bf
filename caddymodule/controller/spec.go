package controller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/internal/duration"
	"github.com/podcell/podcell/scaler"
)

// ServiceSpec is a service's settings: what the podcell handler's JSON
// holds (the Caddyfile adapts to it), what the admin API takes for a
// service it declares and what the store keeps of one. Validate is the
// one check of it, whoever declares the service.
type ServiceSpec struct {
	// Image to run, e.g. "localhost/hello:latest". Either Image or Git.
	Image string `json:"image,omitempty"`
	// Git builds the service's image from a git repository instead.
	Git *GitSource `json:"git,omitempty"`
	// Command overrides the image's entrypoint and command.
	Command []string `json:"command,omitempty"`
	// Port the app listens on; podcell sets $PORT to it. Default 8080.
	Port int `json:"port,omitempty"`
	// Env are extra environment variables.
	Env map[string]string `json:"env,omitempty"`
	// MemoryMB is the memory limit in MiB (128 to 7076, default 256). CPU
	// follows it: memory_mb/1769 cores.
	MemoryMB int `json:"memory_mb,omitempty"`
	// TmpMB caps the /tmp tmpfs, in MiB (default 64).
	TmpMB int `json:"tmp_mb,omitempty"`
	// PidsLimit caps processes and threads (default 512).
	PidsLimit int64 `json:"pids_limit,omitempty"`
	// BandwidthMbit is each instance's network rate in each direction, in
	// Mbit/s (1 to 4 x bandwidth_per_core_mbit). Default: the app's
	// bandwidth_per_core_mbit times memory_mb/1769.
	BandwidthMbit int `json:"bandwidth_mbit,omitempty"`
	// StartupCPU is the CPU, in cores, an instance starts with until its
	// app answers (default: the global startup_cpu; -1: off).
	StartupCPU float64 `json:"startup_cpu,omitempty"`

	MinInstances int `json:"min_instances,omitempty"`
	MaxInstances int `json:"max_instances,omitempty"` // default 10
	// Concurrency is the in-flight requests per instance (default 80).
	Concurrency int `json:"concurrency,omitempty"`

	// PauseAfter freezes an idle instance (default 10s; negative: never).
	PauseAfter Duration `json:"pause_after,omitempty"`
	// IdleTimeout removes an idle instance (default 5m).
	IdleTimeout Duration `json:"idle_timeout,omitempty"`
	// StableWindow is how long load must stay low before scaling in (default 60s).
	StableWindow Duration `json:"stable_window,omitempty"`
	// QueueSize bounds requests waiting for an instance (default 1000).
	QueueSize int `json:"queue_size,omitempty"`
	// QueueTimeout bounds one request's wait (default start_timeout + 5s,
	// at least 30s: a request outwaits a cold start).
	QueueTimeout Duration `json:"queue_timeout,omitempty"`
	// StartTimeout bounds an instance's start until its port answers (default 60s).
	StartTimeout Duration `json:"start_timeout,omitempty"`
	// HealthPath, if set, must answer 2xx/3xx before an instance gets traffic.
	HealthPath string `json:"health_path,omitempty"`
	// DrainTimeout bounds how long scale-in waits for in-flight requests (default 30s).
	DrainTimeout Duration `json:"drain_timeout,omitempty"`
	// StopGrace is the time between SIGTERM and SIGKILL (default 5s).
	StopGrace Duration `json:"stop_grace,omitempty"`

	// Cron are scheduled calls to the service (docs/cron.md), as declared:
	// without their service, unset fields unset (see cron.Job.For).
	Cron []cron.Job `json:"cron,omitempty"`
}

// Duration is a time.Duration in JSON as Caddy's: a number of nanoseconds
// or a string such as "30s", "5m" or "1d". A cron job's timeout is one
// too (cron.Job).
type Duration = duration.Duration

// GitSource is a service's code: a public git repository built into an
// image, instead of a ready image.
type GitSource struct {
	// URL of the repository (https; http for local testing).
	URL string `json:"url"`
	// Ref is a branch, a tag or a commit SHA. Default: the remote's HEAD.
	Ref string `json:"ref,omitempty"`
	// Root is the app's directory inside the repository (monorepos).
	Root string `json:"root,omitempty"`
	// Runtime is the base image family: python3.11-debian, node20-alpine...;
	// empty: detected from the app's files (docs/deploying.md).
	Runtime string `json:"runtime,omitempty"`
	// Install replaces the detected dependency install; empty: detected.
	Install string `json:"install,omitempty"`
	// Build is the build command (several lines allowed), run after the
	// install; empty: package.json's build script, if any.
	Build string `json:"build,omitempty"`
	// BuildEnv are env vars of the install and build steps only (build
	// arguments: not in the running container, visible in the image's
	// history).
	BuildEnv map[string]string `json:"build_env,omitempty"`
	// Start is the start command; detected if empty.
	Start string `json:"start,omitempty"`
	// PollInterval redeploys when the ref points to a new commit, checked
	// this often. Zero: no polling.
	PollInterval Duration `json:"poll_interval,omitempty"`
	// WebhookPath, on the service's route, accepts GitHub push webhooks
	// signed with WebhookSecret (X-Hub-Signature-256) and redeploys.
	// WebhookSecret may be a placeholder ({env.NAME}, {file./path}) in a
	// config, which the Caddy app resolves (Declared.WebhookKey); the
	// admin API's is taken literally.
	WebhookPath   string `json:"webhook_path,omitempty"`
	WebhookSecret string `json:"webhook_secret,omitempty"`
	// BuildMemoryMB, BuildCPUs, BuildPids and BuildTimeout bound this
	// service's builds, overriding the app's (zero: the app's).
	BuildMemoryMB int      `json:"build_memory_mb,omitempty"`
	BuildCPUs     float64  `json:"build_cpus,omitempty"`
	BuildPids     int      `json:"build_pids,omitempty"`
	BuildTimeout  Duration `json:"build_timeout,omitempty"`
}

// UnmarshalJSON reads the settings strictly (an unknown field is an
// error), and takes root under the names earlier answers of the admin API
// showed it (RootDir, in a service's deploy.source) or a user may guess
// (root_dir); build_env also as BuildEnv. Go's decoder matches names
// case-insensitively, so URL, Ref, Runtime... need no alias.
func (g *GitSource) UnmarshalJSON(b []byte) error {
	type plain GitSource // without this method
	var v struct {
		plain
		RootDir    *string           `json:"root_dir"`
		GoRootDir  *string           `json:"RootDir"`
		GoBuildEnv map[string]string `json:"BuildEnv"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	for _, alias := range []*string{v.RootDir, v.GoRootDir} {
		if alias == nil {
			continue
		}
		if v.Root != "" && v.Root != *alias {
			return fmt.Errorf("git: root %q and root_dir/RootDir %q differ: set root only", v.Root, *alias)
		}
		v.Root = *alias
	}
	if v.GoBuildEnv != nil {
		if v.BuildEnv != nil {
			return fmt.Errorf("git: build_env and BuildEnv are both set: set build_env only")
		}
		v.BuildEnv = v.GoBuildEnv
	}
	*g = GitSource(v.plain)
	return nil
}

// BuildSpec is what the builder makes of the source for an app on port.
func (g *GitSource) BuildSpec(port int) builder.Spec {
	return builder.Spec{
		Source:   builder.Source{URL: g.URL, Ref: g.Ref, RootDir: g.Root},
		Runtime:  g.Runtime,
		Install:  g.Install,
		Build:    g.Build,
		BuildEnv: g.BuildEnv,
		Start:    g.Start,
		Port:     port,
		Limits: builder.Limits{MemoryMB: g.BuildMemoryMB, CPUs: g.BuildCPUs, Pids: g.BuildPids,
			Timeout: time.Duration(g.BuildTimeout)},
	}
}

func (g *GitSource) validate() error {
	if err := g.BuildSpec(8080).Validate(); err != nil {
		return err
	}
	if (g.WebhookPath == "") != (g.WebhookSecret == "") {
		return fmt.Errorf("webhook needs both a path and a secret: webhook /_podcell/deploy <secret>")
	}
	if g.WebhookPath != "" && !strings.HasPrefix(g.WebhookPath, "/") {
		return fmt.Errorf("webhook path %q must start with '/'", g.WebhookPath)
	}
	return nil
}

// Config is the spec as the scaler runs it, defaults filled in. A git
// service's image is its build's, set by the controller.
func (s ServiceSpec) Config(name string) scaler.ServiceConfig {
	return scaler.ServiceConfig{
		Name:          name,
		Image:         s.Image,
		Command:       s.Command,
		Port:          s.Port,
		Env:           s.Env,
		MemoryMB:      s.MemoryMB,
		TmpMB:         s.TmpMB,
		PidsLimit:     s.PidsLimit,
		StartupCPU:    s.StartupCPU,
		BandwidthMbit: s.BandwidthMbit,
		MinInstances:  s.MinInstances,
		MaxInstances:  s.MaxInstances,
		Concurrency:   s.Concurrency,
		PauseAfter:    time.Duration(s.PauseAfter),
		IdleTimeout:   time.Duration(s.IdleTimeout),
		StableWindow:  time.Duration(s.StableWindow),
		QueueSize:     s.QueueSize,
		QueueTimeout:  time.Duration(s.QueueTimeout),
		StartTimeout:  time.Duration(s.StartTimeout),
		HealthPath:    s.HealthPath,
		DrainTimeout:  time.Duration(s.DrainTimeout),
		StopGrace:     time.Duration(s.StopGrace),
	}.WithDefaults()
}

// Validate rejects settings that would fail at the first request, naming
// the field and the fix. It is the one check of a service: the Caddyfile,
// the handler's JSON, the admin API and the store's records go through it.
func (s ServiceSpec) Validate(name string) error {
	cfg := s.Config(name) // its Validate checks the name
	switch {
	case s.Git != nil && s.Image != "":
		return fmt.Errorf("service %s: set image or git, not both", name)
	case s.Git != nil:
		if err := s.Git.validate(); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		// The name its builds will carry: the builder checks the rest.
		cfg.Image = imageTag(name, s.Git.BuildSpec(cfg.Port))
	case s.Image == "":
		return fmt.Errorf("service %s: image or git is required (e.g. image localhost/hello:latest)", name)
	}
	if err := CheckEnv(s.Env); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	return validateCron(name, s.Cron)
}

// Warnings are settings that are valid but likely not what the user
// meant, each naming the fields and the fix: they are logged where the
// service is declared.
func (s ServiceSpec) Warnings(name string) []string {
	var out []string
	if cfg := s.Config(name); s.QueueTimeout != 0 && cfg.QueueTimeout < cfg.StartTimeout {
		out = append(out, fmt.Sprintf("service %s: queue_timeout %s is shorter than start_timeout %s: the first request of a slow start "+
			"gets 503 before the start succeeds or fails; raise queue_timeout to more than start_timeout, or leave it out (it then "+
			"defaults to start_timeout + 5s)", name, cfg.QueueTimeout, cfg.StartTimeout))
	}
	return out
}

// Bounds on what one service's env may hold.
const (
	MaxEnvValue = 32 << 10
	maxEnvVars  = 256
	maxEnvTotal = 256 << 10
)

// CronSecretEnv carries the service's cron secret into its containers, to
// check the Podcell-Cron-Secret header of a scheduled call against.
const CronSecretEnv = "PODCELL_CRON_SECRET"

// CheckEnvName rejects a name no env var may have or that podcell sets:
// the scaler's rule (a variable name, not PORT), and the cron secret's.
func CheckEnvName(k string) error {
	if err := scaler.CheckEnvName(k); err != nil {
		return Errorf(http.StatusBadRequest, "%v", err)
	}
	if k == CronSecretEnv {
		return Errorf(http.StatusBadRequest, "env %s is set by podcell to the service's cron secret and cannot be changed: remove it from env", CronSecretEnv)
	}
	return nil
}

// CheckEnv checks names and values of env vars, one by one.
func CheckEnv(env map[string]string) error {
	for k, v := range env {
		if err := CheckEnvName(k); err != nil {
			return err
		}
		if len(v) > MaxEnvValue {
			return Errorf(http.StatusRequestEntityTooLarge, "env %s: the value is %d bytes, more than the %d allowed", k, len(v), MaxEnvValue)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return Errorf(http.StatusBadRequest, "env %s: the value contains a NUL byte, which an environment cannot hold", k)
		}
	}
	return nil
}

// checkEnvTotal bounds a service's whole env after a change.
func checkEnvTotal(env map[string]string) error {
	total := 0
	for k, v := range env {
		total += len(k) + len(v)
	}
	if len(env) > maxEnvVars {
		return Errorf(http.StatusRequestEntityTooLarge, "env: %d vars, more than the %d allowed per service", len(env), maxEnvVars)
	}
	if total > maxEnvTotal {
		return Errorf(http.StatusRequestEntityTooLarge, "env: %d bytes in all, more than the %d allowed per service", total, maxEnvTotal)
	}
	return nil
}

// validateCron checks a service's jobs; errors name the job and the field.
func validateCron(service string, jobs []cron.Job) error {
	seen := map[string]bool{}
	for _, c := range jobs {
		j := c.For(service)
		if err := j.Validate(); err != nil {
			return err
		}
		if seen[j.Name] {
			return fmt.Errorf("cron job %q of service %s is declared twice: give one of them another name", j.Name, service)
		}
		seen[j.Name] = true
	}
	return nil
}

// Error is an operation's failure as the admin API answers it: an HTTP
// status and a message that says what to do.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Errorf makes an *Error with status code.
func Errorf(code int, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}
