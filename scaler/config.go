package scaler

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// ServiceConfig is one service's desired state. Zero values take the defaults
// documented on each field (see WithDefaults).
type ServiceConfig struct {
	Name    string
	Image   string
	Command []string          // overrides the image's entrypoint and command
	Port    int               // port the app listens on; exported as $PORT (default 8080)
	Env     map[string]string // extra env vars; PORT is always set by podcell
	// ExpandEnv names the Env entries whose values are templates that
	// Options.Expand resolves each time a container is created (podcell:
	// {env.NAME} and {file./path} placeholders). Only a value the host's
	// admin wrote may be named here: resolving reads the host. Env and
	// revisions keep the template, never what it resolves to.
	ExpandEnv []string

	MemoryMB  int   // 128..7076 (default 256); CPU follows memory, see LimitsFor
	TmpMB     int   // /tmp tmpfs size cap (default 64, at most MemoryMB)
	PidsLimit int64 // default 512
	// BandwidthMbit is the instance's rate in each direction, in Mbit/s.
	// 0 (the default) ties it to memory as CPU is: the scaler's
	// bandwidth_per_core times memory_MB/1769 (see BandwidthFor).
	BandwidthMbit int
	// StartupCPU is the CPU, in cores, an instance starts with until its
	// app answers (at most the cores it may run on); 0 takes
	// Options.StartupCPU, negative: no boost. See boost.go.
	StartupCPU float64

	MinInstances int // kept even when idle (default 0)
	MaxInstances int // default 10
	Concurrency  int // in-flight requests per instance (default 80, like Cloud Run)

	PauseAfter   time.Duration // idle time before an instance is frozen (default 10s; negative disables)
	IdleTimeout  time.Duration // idle time before an instance is removed (default 5m)
	StableWindow time.Duration // how long load must stay low before scaling in (default 60s)

	QueueSize    int           // requests waiting for an instance (default 1000)
	QueueTimeout time.Duration // how long one may wait (default start_timeout + 5s: see WithDefaults)

	StartTimeout time.Duration // from start until the port answers (default 60s)
	HealthPath   string        // HTTP path that must answer before traffic; "" = TCP connect
	DrainTimeout time.Duration // how long scale-in waits for in-flight requests (default 30s)
	StopGrace    time.Duration // SIGTERM to SIGKILL (default 5s)
}

// The rules for names, each the one check of its kind: the controller's
// service spec, the cron jobs and the builder's build_env use them too.
var (
	nameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// CheckName checks a service's name, which is also its containers' and
// network's prefix and a DNS label of host mode; a cron job's name follows
// the same rule. The error reads after what is named: "service name %w".
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%q is invalid: use 1-40 lowercase letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// ValidEnvName reports whether k can name an environment variable: what a
// shell can export, at most 128 bytes.
func ValidEnvName(k string) bool { return envNameRE.MatchString(k) }

// CheckEnvName rejects a name a service's env var may not have: one that
// is not a variable name, or PORT, which the scaler sets.
func CheckEnvName(k string) error {
	switch {
	case !ValidEnvName(k):
		return fmt.Errorf("env name %q is invalid: use up to 128 letters, digits and '_', not starting with a digit", k)
	case k == "PORT":
		return fmt.Errorf("env PORT is set by podcell from the service's port setting: change port instead")
	}
	return nil
}

// CheckUserNS checks Options.UserNS (the userns option).
func CheckUserNS(mode string) error {
	switch mode {
	case "", "auto", "host":
		return nil
	}
	return fmt.Errorf("userns %q is not supported: use auto or host", mode)
}

// WithDefaults returns c with every unset field at its default.
func (c ServiceConfig) WithDefaults() ServiceConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Port, 8080)
	def(&c.MemoryMB, 256)
	def(&c.TmpMB, 64)
	if c.PidsLimit == 0 {
		c.PidsLimit = 512
	}
	def(&c.MaxInstances, 10)
	def(&c.Concurrency, 80)
	defD(&c.PauseAfter, 10*time.Second)
	defD(&c.IdleTimeout, 5*time.Minute)
	defD(&c.StableWindow, 60*time.Second)
	def(&c.QueueSize, 1000)
	defD(&c.StartTimeout, 60*time.Second)
	// A request that starts an instance waits for it: a queue timeout
	// below the start timeout would turn the first visitor of a slow
	// start away with a 503 before the start ends either way (and before
	// its failure could say why). As on Cloud Run, a request outwaits a
	// cold start; the 5 s leave time to hand it the instance.
	defD(&c.QueueTimeout, max(30*time.Second, c.StartTimeout+5*time.Second))
	defD(&c.DrainTimeout, 30*time.Second)
	defD(&c.StopGrace, 5*time.Second)
	return c
}

// Validate checks a config that went through WithDefaults. Errors name the
// field and say how to fix it.
func (c ServiceConfig) Validate() error {
	if err := CheckName(c.Name); err != nil {
		return fmt.Errorf("service name %w", err)
	}
	if strings.TrimSpace(c.Image) == "" {
		return fmt.Errorf("service %s: image is required (e.g. localhost/hello:latest)", c.Name)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("service %s: port %d is out of range: use 1 to 65535", c.Name, c.Port)
	}
	if _, err := LimitsFor(c.MemoryMB, c.TmpMB, c.PidsLimit); err != nil {
		return fmt.Errorf("service %s: %w", c.Name, err)
	}
	if c.BandwidthMbit != 0 {
		if err := CheckBandwidth("bandwidth", c.BandwidthMbit); err != nil {
			return fmt.Errorf("service %s: %w", c.Name, err)
		}
	}
	for k := range c.Env {
		if err := CheckEnvName(k); err != nil {
			return fmt.Errorf("service %s: %w", c.Name, err)
		}
	}
	for _, k := range c.ExpandEnv {
		if _, ok := c.Env[k]; !ok {
			return fmt.Errorf("service %s: ExpandEnv names %q, which Env does not set", c.Name, k)
		}
	}
	if c.StartupCPU > MaxMemoryMB/MBPerCore {
		return fmt.Errorf("service %s: startup_cpu %g is too large: use at most %d cores, or off", c.Name, c.StartupCPU, MaxMemoryMB/MBPerCore)
	}
	if c.MinInstances < 0 {
		return fmt.Errorf("service %s: min_instances %d is negative: use 0 or more", c.Name, c.MinInstances)
	}
	if c.MaxInstances < 1 {
		return fmt.Errorf("service %s: max_instances %d is too small: use 1 or more", c.Name, c.MaxInstances)
	}
	if c.MinInstances > c.MaxInstances {
		return fmt.Errorf("service %s: min_instances %d exceeds max_instances %d: raise max_instances or lower min_instances", c.Name, c.MinInstances, c.MaxInstances)
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("service %s: concurrency %d is too small: use 1 or more", c.Name, c.Concurrency)
	}
	if c.QueueSize < 1 {
		return fmt.Errorf("service %s: queue_size %d is too small: use 1 or more (requests wait there while an instance starts)", c.Name, c.QueueSize)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"idle_timeout", c.IdleTimeout}, {"stable_window", c.StableWindow}, {"queue_timeout", c.QueueTimeout},
		{"start_timeout", c.StartTimeout}, {"drain_timeout", c.DrainTimeout}, {"stop_grace", c.StopGrace},
	} {
		if d.v <= 0 {
			return fmt.Errorf("service %s: %s %s must be positive", c.Name, d.name, d.v)
		}
	}
	if c.PauseAfter > 0 && c.PauseAfter >= c.IdleTimeout {
		return fmt.Errorf("service %s: pause_after %s must be shorter than idle_timeout %s (or negative to disable pausing)", c.Name, c.PauseAfter, c.IdleTimeout)
	}
	if c.HealthPath != "" && !strings.HasPrefix(c.HealthPath, "/") {
		return fmt.Errorf("service %s: health_path %q must start with '/'", c.Name, c.HealthPath)
	}
	return nil
}

// Revision identifies what an instance runs: two configs with the same
// revision can share instances, a change of revision rolls them over.
// Scaling knobs are not part of it.
func (c ServiceConfig) Revision() string {
	h := sha256.New()
	fmt.Fprintf(h, "image=%s\ncmd=%q\nport=%d\nmem=%d\ntmp=%d\npids=%d\nhealth=%s\n",
		c.Image, c.Command, c.Port, c.MemoryMB, c.TmpMB, c.PidsLimit, c.HealthPath)
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "env %q=%q\n", k, c.Env[k])
	}
	// A rate set for the service is set on the instance's network when it
	// starts: a new one needs new instances. Unset keeps the revision a
	// config had before bandwidth existed.
	if c.BandwidthMbit != 0 {
		fmt.Fprintf(h, "bandwidth=%d\n", c.BandwidthMbit)
	}
	// Resolved or literal is a different container env; a config without
	// templates keeps the revision it had before ExpandEnv existed.
	expand := slices.Sorted(slices.Values(c.ExpandEnv))
	for _, k := range slices.Compact(expand) {
		fmt.Fprintf(h, "expand %q\n", k)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
