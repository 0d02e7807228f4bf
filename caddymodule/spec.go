package caddymodule

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/podcell/podcell/scaler"
)

// ServiceSpec is a service's settings, as the podcell handler's JSON has
// them and as the admin API takes them for a service it declares.
type ServiceSpec struct {
	// Image to run, e.g. "localhost/hello:latest". Either Image or Git.
	Image string `json:"image,omitempty"`
	// Git builds the service's image from a git repository instead.
	Git *gitSource `json:"git,omitempty"`
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
	// Mbit/s (1 to 100000). Default: the app's bandwidth_per_core_mbit
	// times memory_mb/1769.
	BandwidthMbit int `json:"bandwidth_mbit,omitempty"`
	// StartupCPU is the CPU, in cores, an instance starts with until its
	// app answers (default: the global startup_cpu; -1: off).
	StartupCPU float64 `json:"startup_cpu,omitempty"`

	MinInstances int `json:"min_instances,omitempty"`
	MaxInstances int `json:"max_instances,omitempty"` // default 10
	// Concurrency is the in-flight requests per instance (default 80).
	Concurrency int `json:"concurrency,omitempty"`

	// PauseAfter freezes an idle instance (default 10s; negative: never).
	PauseAfter caddy.Duration `json:"pause_after,omitempty"`
	// IdleTimeout removes an idle instance (default 5m).
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
	// StableWindow is how long load must stay low before scaling in (default 60s).
	StableWindow caddy.Duration `json:"stable_window,omitempty"`
	// QueueSize bounds requests waiting for an instance (default 1000).
	QueueSize int `json:"queue_size,omitempty"`
	// QueueTimeout bounds one request's wait (default 30s).
	QueueTimeout caddy.Duration `json:"queue_timeout,omitempty"`
	// StartTimeout bounds an instance's start until its port answers (default 60s).
	StartTimeout caddy.Duration `json:"start_timeout,omitempty"`
	// HealthPath, if set, must answer 2xx/3xx before an instance gets traffic.
	HealthPath string `json:"health_path,omitempty"`
	// DrainTimeout bounds how long scale-in waits for in-flight requests (default 30s).
	DrainTimeout caddy.Duration `json:"drain_timeout,omitempty"`
	// StopGrace is the time between SIGTERM and SIGKILL (default 5s).
	StopGrace caddy.Duration `json:"stop_grace,omitempty"`

	// Cron are scheduled calls to the service (docs/cron.md).
	Cron []CronJob `json:"cron,omitempty"`
}

// config turns the spec into a scaler config with defaults.
func (s ServiceSpec) config(name string) scaler.ServiceConfig {
	return scaler.ServiceConfig{
		Name:          name,
		Image:         s.Image,
		Command:       s.Command,
		Port:          s.Port,
		Env:           s.Env,
		MemoryMB:      s.MemoryMB,
		TmpMB:         s.TmpMB,
		PidsLimit:     s.PidsLimit,
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
		StartupCPU:    s.StartupCPU,
	}.WithDefaults()
}

// validate rejects settings that would fail at the first request.
func (s ServiceSpec) validate(name string) error {
	cfg := s.config(name)
	if s.Git != nil {
		if s.Image != "" {
			return fmt.Errorf("service %s: set image or git, not both", name)
		}
		if err := s.Git.validate(); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		cfg.Image = "built-from-git" // checked by the builder instead
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if _, ok := s.Env[CronSecretEnv]; ok {
		return fmt.Errorf("service %s: env %s is set by podcell to the service's cron secret: remove it from env", name, CronSecretEnv)
	}
	return validateCron(name, s.Cron)
}
