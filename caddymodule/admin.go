package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/podcell/podcell/scaler"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves podcell's management endpoints on Caddy's admin API,
// under /podcell/. It reads the live scalers, so it answers for whatever
// config is running.
type adminAPI struct{}

func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.podcell",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

func (a adminAPI) Routes() []caddy.AdminRoute {
	return append([]caddy.AdminRoute{
		{Pattern: "/podcell/services", Handler: caddy.AdminHandlerFunc(a.listServices)},
		{Pattern: "/podcell/services/", Handler: caddy.AdminHandlerFunc(a.service)},
		{Pattern: "/podcell/dashboard/", Handler: caddy.AdminHandlerFunc(serveDashboard)},
	}, observeRoutes()...)
}

// ServiceStatus is a service's live state as the admin API reports it.
type ServiceStatus struct {
	Name string `json:"name"`
	// Source says who declared the service: "config" (Caddyfile or JSON
	// config) or "api".
	Source    string                    `json:"source,omitempty"`
	Image     string                    `json:"image"`
	Revision  string                    `json:"revision"`
	Inflight  int                       `json:"inflight"`
	Queued    int                       `json:"queued"`
	States    map[string]int            `json:"states"`
	Instances []scaler.InstanceSnapshot `json:"instances"`
	Stats     map[string]int64          `json:"stats"`
	Deploy    *DeployStatus             `json:"deploy,omitempty"`
}

func statusOf(svc *scaler.Service) ServiceStatus {
	snap := svc.Snapshot()
	st := ServiceStatus{
		Name: snap.Name, Image: svc.Config().Image, Revision: snap.Revision,
		Inflight: snap.Inflight, Queued: snap.Queued, States: map[string]int{},
		Instances: snap.Instances,
		Stats: map[string]int64{
			"cold_starts": svc.Stats.ColdStarts.Load(), "resumes": svc.Stats.Resumes.Load(),
			"start_failures": svc.Stats.StartFails.Load(), "crashes": svc.Stats.Crashes.Load(),
			"oom_kills": svc.Stats.OOMKills.Load(), "pauses": svc.Stats.Pauses.Load(),
			"stops": svc.Stats.Stops.Load(), "queue_full": svc.Stats.QueueFull.Load(),
			"queue_timeouts": svc.Stats.QueueTimeout.Load(),
		},
	}
	if st.Instances == nil {
		st.Instances = []scaler.InstanceSnapshot{}
	}
	for _, i := range snap.Instances {
		st.States[i.State]++
	}
	return st
}

// liveServices lists the services of every running scaler, by name.
func liveServices() []*scaler.Service {
	var out []*scaler.Service
	scalers.Range(func(_, v any) bool {
		out = append(out, v.(pooledScaler).sc.Services()...)
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

func findService(name string) *scaler.Service {
	for _, svc := range liveServices() {
		if svc.Name() == name {
			return svc
		}
	}
	return nil
}

func (adminAPI) listServices(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return apiError(http.StatusMethodNotAllowed, "use GET")
	}
	out := []ServiceStatus{}
	a := current.Load()
	for _, svc := range liveServices() {
		st := statusOf(svc)
		st.Source = sourceOf(a, svc.Name())
		st.Deploy = deployStatus(svc.Name())
		out = append(out, st)
	}
	return writeJSON(w, out)
}

// sourceOf says who declared a service in the running config.
func sourceOf(a *App, name string) string {
	if a == nil {
		return ""
	}
	ref := a.route(name)
	switch {
	case ref == nil:
		return ""
	case ref.api != nil:
		return "api"
	}
	return "config"
}

// service routes /podcell/services/<name>[/<action>...].
func (a adminAPI) service(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/podcell/services/")
	name, action, _ := strings.Cut(rest, "/")
	if name == "" {
		return a.listServices(w, r)
	}
	section, sub, _ := strings.Cut(action, "/")
	switch section {
	case "":
		switch r.Method {
		case http.MethodGet:
		case http.MethodPut:
			return putService(w, r, name)
		case http.MethodDelete:
			return deleteService(w, name)
		default:
			return apiError(http.StatusMethodNotAllowed, "use GET, PUT (declare or change a service) or DELETE")
		}
		a, err := runningApp()
		if err != nil {
			return err
		}
		if a.route(name) == nil && a.sc.Service(name) == nil {
			return apiError(http.StatusNotFound, fmt.Sprintf("service %q does not exist", name))
		}
		return writeJSON(w, statusFor(a, name))
	case "env":
		return envRoutes(w, r, name, sub)
	case "revisions", "rollback":
		if sub != "" {
			break
		}
		return revisionRoutes(w, r, name, section)
	case "logs":
		return serviceLogs(w, r)
	case "deploy", "builds":
		return deployRoutes(w, r, name, action)
	case "cron":
		return cronRoutes(w, r, name, sub)
	}
	return apiError(http.StatusNotFound, fmt.Sprintf("unknown action %q: use env, revisions, rollback, logs, deploy, builds or cron", action))
}

func apiError(code int, msg string) error {
	return caddy.APIError{HTTPStatus: code, Message: msg, Err: fmt.Errorf("%s", msg)}
}

func writeJSON(w http.ResponseWriter, v any) error {
	return writeJSONStatus(w, http.StatusOK, v)
}

// writeJSONStatus answers v as JSON with status code.
func writeJSONStatus(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// decodeStrict reads one JSON value into v: an unknown field is an error,
// so a typo does not silently fall back to a default; so is anything after
// the value.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("one JSON value expected, found more after it")
	}
	return nil
}

var _ caddy.AdminRouter = adminAPI{}
