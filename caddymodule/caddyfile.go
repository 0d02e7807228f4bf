package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/podcell/podcell/caddymodule/controller"
	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/scaler"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("podcell", parseGlobal)
	httpcaddyfile.RegisterHandlerDirective("podcell", parseHandler)
	// Ordered like reverse_proxy, which it is: no `order` line needed.
	httpcaddyfile.RegisterDirectiveOrder("podcell", httpcaddyfile.Before, "reverse_proxy")
}

// parseGlobal parses the global option block:
//
//	podcell {
//	    podman <uri>
//	    data_dir <dir>
//	    owner <name>
//	    userns auto|host
//	    allow_unenforced_limits
//	    bandwidth_per_core <rate>  # 200Mbit (the default), 1Gbit
//	    keep_on_stop
//	    runtime_image <runtime> <image>
//	    build_concurrency <n>
//	    keep_images <n>
//	    startup_cpu <cores>|off
//	    startup_cpu_budget <cores>
//	    standby initialized|created
//	    standby_idle <duration>|always
//	    build_memory <size>
//	    build_cpus <cores>
//	    build_pids <n>
//	    build_timeout <duration>
//	    build_user <name>
//	    encryption_key_file <file>
//	    encryption_key_env <NAME>
//	    dashboard
//	}
func parseGlobal(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	d.Next() // "podcell"
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "podman":
			if !d.AllArgs(&app.Podman) {
				return nil, d.Errf("podman takes one argument, the API address, e.g. unix:///run/podman/podman.sock")
			}
		case "data_dir":
			if !d.AllArgs(&app.DataDir) {
				return nil, d.ArgErr()
			}
		case "owner":
			if !d.AllArgs(&app.Owner) {
				return nil, d.ArgErr()
			}
		case "userns":
			if !d.AllArgs(&app.UserNS) {
				return nil, d.ArgErr()
			}
			if err := scaler.CheckUserNS(app.UserNS); err != nil {
				return nil, d.Errf("%v", err)
			}
		case "allow_unenforced_limits":
			app.AllowUnenforcedLimits = true
		case "bandwidth_per_core":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.Errf("bandwidth_per_core takes one argument, the rate per core of memory in each direction, e.g. bandwidth_per_core 200Mbit")
			}
			n, err := scaler.ParseBandwidth("bandwidth_per_core", s)
			if err == nil {
				err = scaler.CheckBandwidth("bandwidth_per_core", n)
			}
			if err != nil {
				return nil, d.Errf("%v", err)
			}
			app.BandwidthPerCoreMbit = n
		case "keep_on_stop":
			app.KeepOnStop = true
		case "runtime_image":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Errf("runtime_image takes a runtime and an image: runtime_image python3.11-debian localhost/podcell-runtime:python3.11-debian")
			}
			if app.RuntimeImages == nil {
				app.RuntimeImages = map[string]string{}
			}
			app.RuntimeImages[args[0]] = args[1]
		case "build_concurrency":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return nil, d.Errf("build_concurrency %q: want a whole number >= 1", s)
			}
			app.BuildConcurrency = n
		case "keep_images":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.Errf("keep_images takes one argument, how many earlier images of a built service to keep for rollback, e.g. keep_images 3")
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return nil, d.Errf("keep_images %q: want a whole number >= 0 (0 keeps only the serving image)", s)
			}
			app.KeepImages = &n
		case "build_memory", "build_cpus", "build_pids", "build_timeout":
			if err := parseBuildLimit(d, &app.BuildMemoryMB, &app.BuildCPUs, &app.BuildPids, &app.BuildTimeout); err != nil {
				return nil, err
			}
		case "build_ca":
			if !d.AllArgs(&app.BuildCA) {
				return nil, d.Errf("build_ca takes one argument, a PEM file or a directory of *.crt/*.pem files the install and build steps trust, e.g. build_ca /usr/local/share/ca-certificates")
			}
		case "build_proxy":
			var kind, url string
			if !d.AllArgs(&kind, &url) {
				return nil, d.Errf("build_proxy takes a kind (http, https or no_proxy) and a value, e.g. build_proxy https http://proxy.internal:3128")
			}
			switch kind {
			case "http":
				app.BuildProxy.HTTP = url
			case "https":
				app.BuildProxy.HTTPS = url
			case "no_proxy":
				app.BuildProxy.NoProxy = url
			default:
				return nil, d.Errf("build_proxy %q: the kind is http, https or no_proxy", kind)
			}
		case "build_user":
			if !d.AllArgs(&app.BuildUser) {
				return nil, d.Errf("build_user takes one argument, the unprivileged host user builds run as, e.g. build_user podcell")
			}
		case "startup_cpu":
			f, err := parseStartupCPU(d)
			if err != nil {
				return nil, err
			}
			app.StartupCPU = f
		case "startup_cpu_budget":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.Errf("startup_cpu_budget takes one argument, the cores all starting instances may boost by together, e.g. startup_cpu_budget 2")
			}
			f, perr := strconv.ParseFloat(s, 64)
			if perr != nil || f <= 0 {
				return nil, d.Errf("startup_cpu_budget %q: want a number of cores > 0, e.g. 2", s)
			}
			app.StartupCPUBudget = f
		case "standby":
			if !d.AllArgs(&app.Standby) || (app.Standby != "initialized" && app.Standby != "created") {
				return nil, d.Errf("standby takes one argument, initialized (the default: a cold start is the app's start) or created (about 4 MB less per standby, a slower cold start)")
			}
		case "standby_idle":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.Errf("standby_idle takes one argument, how long a service keeps a standby after its last instance, e.g. standby_idle 30m, or always")
			}
			if s == "always" {
				app.StandbyIdle = -1
				break
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil || dur <= 0 {
				return nil, d.Errf("standby_idle %q: want a positive duration such as 30m, or always", s)
			}
			app.StandbyIdle = caddy.Duration(dur)
		case "max_repo_size":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.Errf("max_repo_size takes one argument, e.g. max_repo_size 1GiB")
			}
			mb, err := parseMB(s)
			if err != nil {
				return nil, d.Errf("max_repo_size %q: %v", s, err)
			}
			app.MaxRepoMB = mb
		case "max_repo_files":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.Errf("max_repo_files takes one argument, e.g. max_repo_files 200000")
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return nil, d.Errf("max_repo_files %q: want a whole number >= 1", s)
			}
			app.MaxRepoFiles = n
		case "encryption_key_file":
			if !d.AllArgs(&app.EncryptionKeyFile) {
				return nil, d.Errf("encryption_key_file takes one argument, a file holding the store's key (32 bytes as hex)")
			}
		case "encryption_key_env":
			if !d.AllArgs(&app.EncryptionKeyEnv) {
				return nil, d.Errf("encryption_key_env takes one argument, the name of an env var holding the store's key")
			}
		case "dashboard":
			if d.NextArg() {
				return nil, d.Errf("dashboard takes no argument: it turns the dashboard on")
			}
			app.Dashboard = true
		default:
			return nil, d.Errf("unknown podcell global option %q: known ones are podman, data_dir, owner, userns, allow_unenforced_limits, bandwidth_per_core, keep_on_stop, runtime_image, build_concurrency, keep_images, build_memory, build_cpus, build_pids, build_timeout, build_user, max_repo_size, max_repo_files, build_ca, build_proxy, startup_cpu, startup_cpu_budget, encryption_key_file, encryption_key_env, dashboard", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "podcell", Value: caddyconfig.JSON(app, nil)}, nil
}

func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	ph := new(Handler)
	err := ph.UnmarshalCaddyfile(h.Dispenser)
	return ph, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	podcell <service> {
//	    image <image>            # or build from git:
//	    git <url> [ref]
//	    root <dir>
//	    runtime <name>
//	    build <command>
//	    start <command>
//	    auto_deploy <interval>
//	    build_memory <size>       # and build_cpus, build_pids, build_timeout
//	    webhook <path> <secret>
//	    command <arg...>
//	    port <port>
//	    env <NAME> <value>
//	    memory <size>            # 256MB, 1GiB (MB = MiB, as in Podman)
//	    tmp_size <size>
//	    pids_limit <n>
//	    bandwidth <rate>         # 50Mbit, 1Gbit; default: bandwidth_per_core x memory/1769
//	    startup_cpu <cores>|off
//	    min_instances <n>
//	    max_instances <n>
//	    concurrency <n>
//	    pause_after <duration>|off
//	    idle_timeout <duration>
//	    stable_window <duration>
//	    queue_size <n>
//	    queue_timeout <duration>
//	    start_timeout <duration>
//	    health_path <path>
//	    drain_timeout <duration>
//	    stop_grace <duration>
//	    stream_close_delay <duration>
//	    cron "<expr>" <METHOD> <path> [body] {   # any number of them
//	        name <name>
//	        tz <zone>
//	        timeout <duration>
//	        retries <n>
//	        overlap skip|allow|replace
//	        header <name> <value>
//	    }
//	}
//
// or, in host mode, serving every service (also those declared through the
// admin API) at <service>.<domain>:
//
//	podcell {
//	    hosts *.<domain>...
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		h.Service = d.Val()
	}
	if d.NextArg() {
		return d.Errf("podcell takes one argument, the service name; put settings in a block")
	}
	intArg := func(dst *int, min int) error {
		var s string
		if !d.AllArgs(&s) {
			return d.ArgErr()
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < min {
			return d.Errf("%s %q: want a whole number >= %d", d.Val(), s, min)
		}
		*dst = n
		return nil
	}
	durArg := func(dst *controller.Duration) error {
		name := d.Val()
		var s string
		if !d.AllArgs(&s) {
			return d.ArgErr()
		}
		if name == "pause_after" && s == "off" {
			*dst = -1
			return nil
		}
		v, err := caddy.ParseDuration(s)
		if err != nil || v <= 0 {
			return d.Errf("%s %q: want a positive duration such as 500ms, 30s or 5m", name, s)
		}
		*dst = controller.Duration(v)
		return nil
	}
	sizeArg := func(dst *int) error {
		name := d.Val()
		var s string
		if !d.AllArgs(&s) {
			return d.ArgErr()
		}
		mb, err := parseMB(s)
		if err != nil {
			return d.Errf("%s %q: %v", name, s, err)
		}
		*dst = mb
		return nil
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "image":
			if !d.AllArgs(&h.Image) {
				return d.Errf("image takes one argument, e.g. image localhost/hello:latest")
			}
		case "git":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Errf("git takes a repository URL and an optional branch, tag or commit: git https://github.com/you/app main")
			}
			g := h.git()
			g.URL = args[0]
			if len(args) == 2 {
				g.Ref = args[1]
			}
		case "build_env":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("build_env takes a name and a value: build_env NODE_OPTIONS --max-old-space-size=1536")
			}
			g := h.git()
			if g.BuildEnv == nil {
				g.BuildEnv = map[string]string{}
			}
			g.BuildEnv[args[0]] = args[1]
		case "root", "runtime", "install", "build", "start":
			name := d.Val()
			args := d.RemainingArgs()
			if len(args) != 1 {
				return d.Errf("%s takes one argument (quote commands with spaces; use a heredoc for several lines)", name)
			}
			g := h.git()
			switch name {
			case "root":
				g.Root = args[0]
			case "runtime":
				g.Runtime = args[0]
			case "install":
				g.Install = args[0]
			case "build":
				g.Build = args[0]
			case "start":
				g.Start = args[0]
			}
		case "auto_deploy":
			err = durArg(&h.git().PollInterval)
		case "build_memory", "build_cpus", "build_pids", "build_timeout":
			g := h.git()
			err = parseBuildLimit(d, &g.BuildMemoryMB, &g.BuildCPUs, &g.BuildPids, &g.BuildTimeout)
		case "webhook":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("webhook takes a path and a secret: webhook /_podcell/deploy {env.WEBHOOK_SECRET}")
			}
			h.git().WebhookPath, h.git().WebhookSecret = args[0], args[1]
		case "command":
			h.Command = d.RemainingArgs()
			if len(h.Command) == 0 {
				return d.ArgErr()
			}
		case "port":
			err = intArg(&h.Port, 1)
		case "env":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("env takes a name and a value: env GREETING \"hello world\"")
			}
			if h.Env == nil {
				h.Env = map[string]string{}
			}
			h.Env[args[0]] = args[1]
		case "memory":
			if err = sizeArg(&h.MemoryMB); err == nil {
				if merr := scaler.CheckMemory(h.MemoryMB); merr != nil {
					err = d.Errf("%v", merr)
				}
			}
		case "tmp_size":
			err = sizeArg(&h.TmpMB)
		case "bandwidth":
			var s string
			if !d.AllArgs(&s) {
				return d.Errf("bandwidth takes one argument, the instance's rate in each direction, e.g. bandwidth 50Mbit")
			}
			if h.BandwidthMbit, err = scaler.ParseBandwidth("bandwidth", s); err == nil {
				err = scaler.CheckBandwidth("bandwidth", h.BandwidthMbit)
			}
			if err != nil {
				err = d.Errf("%v", err)
			}
		case "pids_limit":
			var n int
			err = intArg(&n, 16)
			h.PidsLimit = int64(n)
		case "startup_cpu":
			h.StartupCPU, err = parseStartupCPU(d)
		case "min_instances":
			err = intArg(&h.MinInstances, 0)
		case "max_instances":
			err = intArg(&h.MaxInstances, 1)
		case "concurrency":
			err = intArg(&h.Concurrency, 1)
		case "pause_after":
			err = durArg(&h.PauseAfter)
		case "idle_timeout":
			err = durArg(&h.IdleTimeout)
		case "stable_window":
			err = durArg(&h.StableWindow)
		case "queue_size":
			err = intArg(&h.QueueSize, 1)
		case "queue_timeout":
			err = durArg(&h.QueueTimeout)
		case "start_timeout":
			err = durArg(&h.StartTimeout)
		case "health_path":
			if !d.AllArgs(&h.HealthPath) {
				return d.ArgErr()
			}
		case "drain_timeout":
			err = durArg(&h.DrainTimeout)
		case "stop_grace":
			err = durArg(&h.StopGrace)
		case "stream_close_delay":
			var v controller.Duration
			err = durArg(&v)
			h.StreamCloseDelay = caddy.Duration(v)
		case "cron":
			if h.Service == "" {
				return d.Errf("cron belongs in the block of a named service (podcell <name> { cron ... }), not in host mode")
			}
			var job cron.Job
			if job, err = parseCron(d, h.Service); err == nil {
				h.Cron = append(h.Cron, job)
			}
		case "hosts":
			h.Hosts = append(h.Hosts, d.RemainingArgs()...)
			if len(h.Hosts) == 0 {
				return d.Errf("hosts takes one or more patterns: hosts *.apps.localhost")
			}
		default:
			return d.Errf("unknown podcell subdirective %q: see Caddyfile.example or docs/configuration.md for the list", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if h.Service == "" && len(h.Hosts) == 0 {
		return d.Errf("podcell needs a service name (podcell <name> { image ... }) or, for host mode, a hosts line (podcell { hosts *.apps.localhost })")
	}
	if h.Git != nil && h.Git.URL == "" {
		return d.Errf("podcell %s: root, runtime, install, build, build_env, start and the build_* limits need a git repository: git <url> [ref]", h.Service)
	}
	// The spec's one check (ServiceSpec.Validate), while the error can
	// still point at the service's block.
	if err := h.Validate(); err != nil {
		return d.Errf("%v", err)
	}
	return nil
}

// parseCron reads a cron line of service and its block of options.
func parseCron(d *caddyfile.Dispenser, service string) (cron.Job, error) {
	args := d.RemainingArgs()
	if len(args) < 3 || len(args) > 4 {
		return cron.Job{}, d.Errf(`cron takes a schedule, a method, a path and an optional body, e.g. cron "0 3 * * *" POST /tasks/cleanup (quote the schedule: it has spaces)`)
	}
	// Methods are upper case, as Caddy's method matcher takes them.
	c := cron.Job{Schedule: args[0], Method: strings.ToUpper(args[1]), Path: args[2]}
	if len(args) == 4 {
		c.Body = args[3]
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var v string
		if opt != "header" && !d.AllArgs(&v) {
			return c, d.Errf("cron option %s takes one argument", opt)
		}
		switch opt {
		case "name":
			c.Name = v
		case "tz":
			c.TimeZone = v
		case "timeout":
			t, err := caddy.ParseDuration(v)
			if err != nil || t <= 0 {
				return c, d.Errf("cron timeout %q: want a positive duration such as 30s or 5m", v)
			}
			c.Timeout = controller.Duration(t)
		case "retries":
			n, err := strconv.Atoi(v)
			if err != nil {
				return c, d.Errf("cron retries %q: want a whole number from 0 to %d", v, cron.MaxRetries)
			}
			c.Retries = n
		case "overlap":
			o, err := cron.ParseOverlap(v)
			if err != nil {
				return c, d.Errf("cron %v", err)
			}
			c.Overlap = o
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return c, d.Errf("cron header takes a name and a value: header Content-Type application/json")
			}
			if c.Header == nil {
				c.Header = http.Header{}
			}
			c.Header.Add(args[0], args[1])
		default:
			return c, d.Errf("unknown cron option %q: known ones are name, tz, timeout, retries, overlap and header", opt)
		}
	}
	// Here, while the error can still point at the job's lines.
	if err := c.For(service).Validate(); err != nil {
		return c, d.Errf("%v", err)
	}
	return c, nil
}

func (h *Handler) git() *controller.GitSource {
	if h.Git == nil {
		h.Git = new(controller.GitSource)
	}
	return h.Git
}

// parseBuildLimit parses one of build_memory <size>, build_cpus <cores>,
// build_pids <n> and build_timeout <duration> into its field. The
// bounds are checked by builder.Limits.Validate at provision time (and
// for a handler, by its Validate below).
func parseBuildLimit(d *caddyfile.Dispenser, memMB *int, cpus *float64, pids *int, timeout *controller.Duration) error {
	name := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return d.Errf("%s takes one argument, e.g. %s", name, map[string]string{
			"build_memory": "build_memory 2GiB", "build_cpus": "build_cpus 1",
			"build_pids": "build_pids 1024", "build_timeout": "build_timeout 15m"}[name])
	}
	switch name {
	case "build_memory":
		mb, err := parseMB(s)
		if err != nil {
			return d.Errf("build_memory %q: %v", s, err)
		}
		*memMB = mb
	case "build_cpus":
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			return d.Errf("build_cpus %q: want a positive number of cores such as 1 or 0.5", s)
		}
		*cpus = v
	case "build_pids":
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return d.Errf("build_pids %q: want a whole number such as 1024", s)
		}
		*pids = n
	case "build_timeout":
		v, err := caddy.ParseDuration(s)
		if err != nil || v <= 0 {
			return d.Errf("build_timeout %q: want a positive duration such as 15m", s)
		}
		*timeout = controller.Duration(v)
	}
	return nil
}

// parseMB reads a memory size in MiB. "MB" means MiB, as in Podman's and
// Docker's --memory: 256MB, 256MiB, 256M and 256 are all 256 MiB.
func parseMB(s string) (int, error) {
	lower := strings.ToLower(strings.TrimSpace(s))
	num := strings.TrimRight(lower, "abcdefghijklmnopqrstuvwxyz")
	unit := lower[len(num):]
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a size such as 256MB or 1GiB")
	}
	switch unit {
	case "", "m", "mb", "mib":
	case "g", "gb", "gib":
		n *= 1024
	default:
		return 0, fmt.Errorf("unit %q: use MB or GB (binary: 1 GB = 1024 MB)", unit)
	}
	if n != float64(int(n)) {
		return 0, fmt.Errorf("want a whole number of MB")
	}
	return int(n), nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)

// parseStartupCPU reads "startup_cpu <cores>|off": the CPU an instance
// starts with until it is ready (-1 for off).
func parseStartupCPU(d *caddyfile.Dispenser) (float64, error) {
	var s string
	if !d.AllArgs(&s) {
		return 0, d.Errf("startup_cpu takes one argument, the cores an instance starts with until it is ready, or off, e.g. startup_cpu 2")
	}
	if s == "off" {
		return -1, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f > scaler.MaxMemoryMB/scaler.MBPerCore {
		return 0, d.Errf("startup_cpu %q: want a number of cores above 0 and at most %d, or off", s, scaler.MaxMemoryMB/scaler.MBPerCore)
	}
	return f, nil
}
