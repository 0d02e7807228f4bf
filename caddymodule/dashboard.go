package caddymodule

import (
	"net/http"

	"github.com/podcell/podcell/caddymodule/dashboard"
)

// dashboardFiles serves the dashboard's page and scripts.
var dashboardFiles = dashboard.Handler("/podcell/dashboard/")

// serveDashboard serves /podcell/dashboard/ when the running config turned
// the dashboard on. Being on the admin API, it is reachable exactly where
// the admin API is, behind the same checks.
func serveDashboard(w http.ResponseWriter, r *http.Request) error {
	if a := current.Load(); a == nil || !a.Dashboard {
		return apiError(http.StatusNotFound, `the dashboard is off: turn it on with the podcell global option "dashboard" (Caddyfile: podcell { dashboard }; JSON: "dashboard": true in apps.podcell)`)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return apiError(http.StatusMethodNotAllowed, "use GET")
	}
	dashboardFiles.ServeHTTP(w, r)
	return nil
}
