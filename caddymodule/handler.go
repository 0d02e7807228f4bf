package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/podcell/podcell/scaler"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves a route from a podcell service: it takes an instance from
// the scaler (starting or resuming one if needed, queueing meanwhile) and
// proxies the request to it with Caddy's reverse_proxy.
type Handler struct {
	// Service is the service's name: lowercase letters, digits and '-'.
	Service string `json:"service"`
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

	// StreamCloseDelay keeps WebSockets and other upgraded streams open for
	// this long after a config reload (as reverse_proxy's stream_close_delay).
	StreamCloseDelay caddy.Duration `json:"stream_close_delay,omitempty"`

	ref *serviceRef
	rp  *reverseproxy.Handler
	log *zap.Logger
}

func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.podcell",
		New: func() caddy.Module { return new(Handler) },
	}
}

// upstreamPlaceholder carries the chosen instance's address to reverse_proxy.
const upstreamPlaceholder = "http.podcell.upstream"

// config turns the handler's JSON into a scaler config with defaults.
func (h *Handler) config() scaler.ServiceConfig {
	return scaler.ServiceConfig{
		Name:         h.Service,
		Image:        h.Image,
		Command:      h.Command,
		Port:         h.Port,
		Env:          h.Env,
		MemoryMB:     h.MemoryMB,
		TmpMB:        h.TmpMB,
		PidsLimit:    h.PidsLimit,
		MinInstances: h.MinInstances,
		MaxInstances: h.MaxInstances,
		Concurrency:  h.Concurrency,
		PauseAfter:   time.Duration(h.PauseAfter),
		IdleTimeout:  time.Duration(h.IdleTimeout),
		StableWindow: time.Duration(h.StableWindow),
		QueueSize:    h.QueueSize,
		QueueTimeout: time.Duration(h.QueueTimeout),
		StartTimeout: time.Duration(h.StartTimeout),
		HealthPath:   h.HealthPath,
		DrainTimeout: time.Duration(h.DrainTimeout),
		StopGrace:    time.Duration(h.StopGrace),
	}.WithDefaults()
}

func (h *Handler) Provision(ctx caddy.Context) error {
	h.log = ctx.Logger()
	if err := h.Validate(); err != nil {
		return err
	}
	cfg := h.config()
	appIface, err := ctx.App("podcell")
	if err != nil {
		return err
	}
	app := appIface.(*App)
	if h.ref, err = app.declare(cfg, h.Git); err != nil {
		return err
	}
	h.rp = &reverseproxy.Handler{
		Upstreams:        reverseproxy.UpstreamPool{{Dial: "{" + upstreamPlaceholder + "}"}},
		StreamCloseDelay: h.StreamCloseDelay,
	}
	return h.rp.Provision(ctx)
}

// Validate rejects a config that would fail at the first request.
func (h *Handler) Validate() error {
	cfg := h.config()
	if h.Git != nil {
		if h.Image != "" {
			return fmt.Errorf("service %s: set image or git, not both", h.Service)
		}
		if err := h.Git.validate(); err != nil {
			return fmt.Errorf("service %s: %w", h.Service, err)
		}
		cfg.Image = "built-from-git" // checked by the builder instead
	}
	return cfg.Validate()
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.Git != nil && h.Git.WebhookPath != "" && r.URL.Path == h.Git.WebhookPath {
		return h.serveWebhook(w, r)
	}
	svc := h.ref.svc.Load()
	if svc == nil {
		// The podcell app has not started yet, or the first build of a
		// git service is still running.
		t := time.NewTimer(time.Duration(h.ref.cfg.QueueTimeout))
		defer t.Stop()
		select {
		case <-h.ref.ready:
			svc = h.ref.svc.Load()
		case <-t.C:
			w.Header().Set("Retry-After", "10")
			return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("service %s has no deployed revision yet", h.Service))
		case <-r.Context().Done():
			return caddyhttp.Error(499, r.Context().Err())
		}
	}
	lease, err := svc.Acquire(r.Context())
	if err != nil {
		return h.acquireError(w, svc, err)
	}
	defer lease.Release()

	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set(upstreamPlaceholder, lease.Upstream)
	if lease.Wake != scaler.WakeNone {
		w.Header().Set("Podcell-Cold-Start", strconv.FormatInt(lease.Waited.Milliseconds(), 10)+"ms")
	}
	return h.rp.ServeHTTP(w, r, next)
}

// acquireError maps a scaler error to the answer a client should see:
// 503 with Retry-After when the service is saturated, 502 when its
// instances cannot start. Details go to the log, not to the client.
func (h *Handler) acquireError(w http.ResponseWriter, svc *scaler.Service, err error) error {
	var se *scaler.StartError
	switch {
	case errors.Is(err, scaler.ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("service %s: queue full", svc.Name()))
	case errors.Is(err, scaler.ErrQueueTimeout):
		w.Header().Set("Retry-After", "5")
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("service %s: no instance within queue_timeout", svc.Name()))
	case errors.As(err, &se):
		return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("service %s: %s", svc.Name(), se.Reason))
	case errors.Is(err, scaler.ErrClosed):
		w.Header().Set("Retry-After", "1")
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client went away while waiting.
		return caddyhttp.Error(499, err)
	}
	return caddyhttp.Error(http.StatusBadGateway, err)
}

func (h *Handler) Cleanup() error {
	if h.rp != nil {
		return h.rp.Cleanup()
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
