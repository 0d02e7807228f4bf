package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/podcell/podcell/caddymodule/observe"
)

// liveHubs lists the observability hubs of the running scalers.
func liveHubs() []*observe.Hub {
	var out []*observe.Hub
	scalers.Range(func(_, v any) bool {
		out = append(out, v.(pooledScaler).hub)
		return true
	})
	return out
}

// observeRoutes serve metrics and error events on the admin API; a
// service's logs are under its own path (see serviceLogs).
func observeRoutes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/podcell/metrics", Handler: adminHandler(observe.MetricsHandler(liveHubs))},
		{Pattern: "/podcell/events", Handler: adminHandler(observe.EventsHandler(liveHubs))},
	}
}

// serviceLogs serves /podcell/services/<name>/logs.
var serviceLogs = adminHandler(observe.LogsHandler(liveHubs))

// adminHandler adapts a handler that writes its own errors.
func adminHandler(h http.HandlerFunc) caddy.AdminHandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		h(w, r)
		return nil
	}
}
