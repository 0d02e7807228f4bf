package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/podcell/podcell/caddymodule/controller"
	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/dashboard"
	"github.com/podcell/podcell/caddymodule/observe"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves podcell's management endpoints on Caddy's admin API,
// under /podcell/: Caddy's admin router hands them every request there,
// and the route table below (Go 1.22 patterns) dispatches it. It reads
// the controllers of the usage pool, so it answers for whatever config is
// running; the controller's methods do the work.
type adminAPI struct{}

func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.podcell",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

func (adminAPI) Routes() []caddy.AdminRoute {
	mux := (&adminRoutes{ctrl: runningController, dashboard: dashboardOn}).mux()
	return []caddy.AdminRoute{{Pattern: "/podcell/", Handler: caddy.AdminHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		mux.ServeHTTP(w, r)
		return nil
	})}}
}

var _ caddy.AdminRouter = adminAPI{}

// runningController is the controller of the config that started last
// (nil before any did): the only one, unless a reload moved data_dir.
func runningController() *controller.Controller {
	if p := running(); p != nil {
		return p.ctrl
	}
	return nil
}

func running() *pooledController {
	var found *pooledController
	controllers.Range(func(_, v any) bool {
		p := v.(*pooledController)
		if t := p.started.Load(); t != 0 && (found == nil || t > found.started.Load()) {
			found = p
		}
		return true
	})
	return found
}

// dashboardOn says whether the running config turned the dashboard on.
func dashboardOn() bool {
	p := running()
	return p != nil && p.dashboard.Load()
}

// adminRoutes is the admin API's route table. ctrl finds the controller
// (nil: podcell is not running); tests give one directly.
type adminRoutes struct {
	ctrl      func() *controller.Controller
	dashboard func() bool
}

// apiHandler is a route's handler: an error it returns is answered as
// Caddy's admin API answers errors, {"error": "..."} with the status of a
// *controller.Error (500 for any other).
type apiHandler func(c *controller.Controller, w http.ResponseWriter, r *http.Request) error

// mux is the route table. Each path has its methods' routes and a route
// without a method that answers 405 with what the path takes.
func (a *adminRoutes) mux() *http.ServeMux {
	m := http.NewServeMux()
	handle := func(pattern string, h apiHandler) {
		m.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			c := a.ctrl()
			if c == nil {
				writeError(w, controller.Errorf(http.StatusServiceUnavailable, "podcell is not running: load a config with a podcell app first"))
				return
			}
			if err := h(c, w, r); err != nil {
				writeError(w, err)
			}
		})
	}
	only := func(pattern, msg string) {
		m.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			writeError(w, controller.Errorf(http.StatusMethodNotAllowed, "%s", msg))
		})
	}
	const svc = "/podcell/services/{name}"

	handle("GET /podcell/services", listServices)
	handle("GET /podcell/services/{$}", listServices)
	only("/podcell/services", "use GET")
	handle("GET "+svc, getService)
	handle("PUT "+svc, putService)
	handle("DELETE "+svc, deleteService)
	only(svc, "use GET, PUT (declare or change a service) or DELETE")

	handle("GET "+svc+"/env", getEnv)
	handle("PUT "+svc+"/env", putEnv)
	only(svc+"/env", "env: use GET, or PUT with a JSON object of names to values (null unsets)")
	handle("DELETE "+svc+"/env/{var}", deleteEnv)
	only(svc+"/env/{var}", "env/<NAME>: use DELETE")

	handle("GET "+svc+"/revisions", getRevisions)
	only(svc+"/revisions", "revisions: use GET")
	handle("POST "+svc+"/rollback", rollback)
	only(svc+"/rollback", "rollback: use POST with {\"revision\": <seq>}")

	handle("POST "+svc+"/deploy", deploy)
	only(svc+"/deploy", "use POST")
	handle("GET "+svc+"/builds", getBuilds)
	only(svc+"/builds", "use GET")
	handle("GET "+svc+"/builds/{id}/log", buildLog)
	only(svc+"/builds/{id}/log", "use GET")

	handle("GET "+svc+"/cron", getCronJobs)
	only(svc+"/cron", "cron: use GET; a job is at cron/<job>")
	handle("GET "+svc+"/cron/{job}", getCronJob)
	handle("PUT "+svc+"/cron/{job}", putCronJob)
	handle("DELETE "+svc+"/cron/{job}", deleteCronJob)
	only(svc+"/cron/{job}", "cron/<job>: use GET, PUT (add or change a job) or DELETE")
	handle("GET "+svc+"/cron/{job}/runs", getCronRuns)
	only(svc+"/cron/{job}/runs", "cron/<job>/runs: use GET")
	handle("POST "+svc+"/cron/{job}/run", runCronJob)
	only(svc+"/cron/{job}/run", "cron/<job>/run: use POST")

	hubs := func() []*observe.Hub {
		if c := a.ctrl(); c != nil {
			return []*observe.Hub{c.Hub()}
		}
		return nil
	}
	m.HandleFunc(svc+"/logs", observe.LogsHandler(hubs))
	m.HandleFunc("/podcell/metrics", observe.MetricsHandler(hubs))
	m.HandleFunc("/podcell/events", observe.EventsHandler(hubs))
	m.HandleFunc("/podcell/dashboard/", a.serveDashboard)

	m.HandleFunc(svc+"/{action...}", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, controller.Errorf(http.StatusNotFound, "unknown action %q: use env, revisions, rollback, logs, deploy, builds or cron", r.PathValue("action")))
	})
	m.HandleFunc("/podcell/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, controller.Errorf(http.StatusNotFound, "%s: not a podcell endpoint: see /podcell/services", r.URL.Path))
	})
	return m
}

// dashboardFiles serves the dashboard's page and scripts.
var dashboardFiles = dashboard.Handler("/podcell/dashboard/")

// serveDashboard serves /podcell/dashboard/ when the running config turned
// the dashboard on. Being on the admin API, it is reachable exactly where
// the admin API is, behind the same checks.
func (a *adminRoutes) serveDashboard(w http.ResponseWriter, r *http.Request) {
	if a.dashboard == nil || !a.dashboard() {
		writeError(w, controller.Errorf(http.StatusNotFound, `the dashboard is off: turn it on with the podcell global option "dashboard" (Caddyfile: podcell { dashboard }; JSON: "dashboard": true in apps.podcell)`))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, controller.Errorf(http.StatusMethodNotAllowed, "use GET"))
		return
	}
	dashboardFiles.ServeHTTP(w, r)
}

func listServices(c *controller.Controller, w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, http.StatusOK, c.Services())
}

func getService(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	st, err := c.Status(r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// putService declares (201) or changes (200) a service through the API.
func putService(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	spec, err := controller.DecodeSpec(body)
	if err != nil {
		return controller.Errorf(http.StatusBadRequest, "%v", err)
	}
	st, created, err := c.Put(r.PathValue("name"), spec)
	if err != nil {
		return err
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	return writeJSON(w, code, st)
}

func deleteService(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	if err := c.Delete(r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func getEnv(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	reveal, _ := strconv.ParseBool(r.URL.Query().Get("reveal"))
	list, err := c.Env(r.PathValue("name"), reveal)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list)
}

// putEnv takes {"NAME": "value" | null, ...}.
func putEnv(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var changes map[string]*string
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&changes); err != nil {
		return controller.Errorf(http.StatusBadRequest, "body: %v: send a JSON object of env names to string values, null to unset, e.g. {\"GREETING\": \"hi\", \"OLD\": null}", err)
	}
	if changes == nil {
		return controller.Errorf(http.StatusBadRequest, "body: send a JSON object of env names to string values, null to unset")
	}
	list, err := c.SetEnv(r.PathValue("name"), changes)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list)
}

func deleteEnv(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	list, err := c.SetEnv(r.PathValue("name"), map[string]*string{r.PathValue("var"): nil})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list)
}

func getRevisions(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	revs, err := c.Revisions(r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, revs)
}

// rollback takes {"revision": <seq>}, or nothing: the revision before the
// current one.
func rollback(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req struct {
		Revision int `json:"revision"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := controller.DecodeStrict(body, &req); err != nil {
			return controller.Errorf(http.StatusBadRequest, "body: %v: send {\"revision\": <seq>} (or nothing: the revision before the current one)", err)
		}
	}
	st, err := c.Rollback(r.PathValue("name"), req.Revision)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func deploy(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	id, err := c.Deploy(name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, map[string]any{"build": id, "log": fmt.Sprintf("/podcell/services/%s/builds/%d/log", name, id)})
}

func getBuilds(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	builds, err := c.Builds(r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, builds)
}

// buildLog writes a build's log; with ?follow it keeps writing lines as
// they come until the build ends or the client leaves.
func buildLog(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	name, ids := r.PathValue("name"), r.PathValue("id")
	id, err := strconv.Atoi(ids)
	if err != nil {
		return controller.Errorf(http.StatusBadRequest, "build id %q is not a number", ids)
	}
	log, err := c.Log(name, id)
	if err != nil {
		return err
	}
	follow := r.URL.Query().Get("follow") != ""
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w) // finds the flusher under Caddy's wrappers
	next := 0
	for {
		lines, done, more := log.From(next)
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
		next += len(lines)
		rc.Flush()
		if done || !follow {
			return nil
		}
		select {
		case <-more:
		case <-r.Context().Done():
			return nil
		}
	}
}

func getCronJobs(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	jobs, err := c.CronJobs(r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, jobs)
}

func getCronJob(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	st, err := c.CronJob(r.PathValue("name"), r.PathValue("job"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// putCronJob adds (201) or changes (200) a job the API declares.
func putCronJob(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var cj cron.Job
	if err := controller.DecodeStrict(body, &cj); err != nil {
		return controller.Errorf(http.StatusBadRequest, "body: %v: send the job as JSON, e.g. {\"schedule\": \"*/5 * * * *\", \"method\": \"POST\", \"path\": \"/tasks/poll\"}", err)
	}
	st, created, err := c.PutCronJob(r.PathValue("name"), r.PathValue("job"), cj)
	if err != nil {
		return err
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	return writeJSON(w, code, st)
}

func deleteCronJob(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	if err := c.DeleteCronJob(r.PathValue("name"), r.PathValue("job")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func getCronRuns(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	runs, err := c.CronRuns(r.PathValue("name"), r.PathValue("job"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, runs)
}

// CronTriggered answers a manual run.
type CronTriggered struct {
	Service   string    `json:"service"`
	Job       string    `json:"job"`
	Triggered time.Time `json:"triggered"`
}

func runCronJob(c *controller.Controller, w http.ResponseWriter, r *http.Request) error {
	name, job := r.PathValue("name"), r.PathValue("job")
	now := time.Now()
	if err := c.RunJob(name, job); err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, CronTriggered{Service: name, Job: job, Triggered: now})
}

// maxBody bounds what the admin API reads of a request body.
const maxBody = 1 << 20

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, controller.Errorf(http.StatusRequestEntityTooLarge, "body: larger than %d bytes", maxBody)
	}
	if err != nil {
		return nil, controller.Errorf(http.StatusBadRequest, "body: %v", err)
	}
	return b, nil
}

// writeJSON answers v as JSON with status code.
func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeError answers err as Caddy's admin API does: {"error": "..."},
// with the status of a *controller.Error, else 500.
func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var e *controller.Error
	if errors.As(err, &e) {
		code = e.Code
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
