package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler"
)

// Env vars and revisions through the admin API:
//
//	GET    /podcell/services/<name>/env[?reveal=true]
//	PUT    /podcell/services/<name>/env        {"NAME": "value", "OLD": null}
//	DELETE /podcell/services/<name>/env/<NAME>
//	GET    /podcell/services/<name>/revisions
//	POST   /podcell/services/<name>/rollback   {"revision": 3}
//
// A change of env is a new revision: the scaler starts instances with the
// new env, shifts traffic to them as they are ready and drains the old
// ones, so no request fails and nobody restarts anything.

// Bounds on what one service's env may hold.
const (
	maxEnvValue = 32 << 10
	maxEnvVars  = 256
	maxEnvTotal = 256 << 10
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// checkEnvValues validates names and values the API was given.
func checkEnvValues(env map[string]string) error {
	for k, v := range env {
		if err := checkEnvName(k); err != nil {
			return err
		}
		if len(v) > maxEnvValue {
			return apiError(http.StatusRequestEntityTooLarge, fmt.Sprintf("env %s: the value is %d bytes, more than the %d allowed", k, len(v), maxEnvValue))
		}
		if strings.IndexByte(v, 0) >= 0 {
			return apiError(http.StatusBadRequest, fmt.Sprintf("env %s: the value contains a NUL byte, which an environment cannot hold", k))
		}
	}
	return nil
}

func checkEnvName(k string) error {
	if !envNameRE.MatchString(k) {
		return apiError(http.StatusBadRequest, fmt.Sprintf("env name %q is invalid: use up to 128 letters, digits and '_', not starting with a digit", k))
	}
	if k == "PORT" {
		return apiError(http.StatusBadRequest, "env PORT is set by podcell from the service's port setting: change port instead")
	}
	if k == CronSecretEnv {
		return apiError(http.StatusBadRequest, "env "+CronSecretEnv+" is set by podcell to the service's cron secret and cannot be changed")
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
		return apiError(http.StatusRequestEntityTooLarge, fmt.Sprintf("env: %d vars, more than the %d allowed per service", len(env), maxEnvVars))
	}
	if total > maxEnvTotal {
		return apiError(http.StatusRequestEntityTooLarge, fmt.Sprintf("env: %d bytes in all, more than the %d allowed per service", total, maxEnvTotal))
	}
	return nil
}

// EnvVar is one env var as the API shows it.
type EnvVar struct {
	Name   string `json:"name"`
	Source string `json:"source"`          // "api" or "config"
	Value  string `json:"value,omitempty"` // only with ?reveal=true
}

// EnvList is a service's env.
type EnvList struct {
	Service  string   `json:"service"`
	Env      []EnvVar `json:"env"`
	Revealed bool     `json:"revealed"`
	// Revision is the store's newest revision of the service after a change.
	Revision int `json:"revision,omitempty"`
}

// serviceRefLocked finds a service of the running config for a mutation.
func (a *App) serviceRefLocked(name string) (*serviceRef, error) {
	ref := a.services[name]
	if ref == nil {
		return nil, apiError(http.StatusNotFound, fmt.Sprintf("service %q does not exist", name))
	}
	return ref, nil
}

func envRoutes(w http.ResponseWriter, r *http.Request, name, rest string) error {
	a, err := runningApp()
	if err != nil {
		return err
	}
	switch {
	case rest == "" && r.Method == http.MethodGet:
		a.mu.Lock()
		ref, err := a.serviceRefLocked(name)
		a.mu.Unlock()
		if err != nil {
			return err
		}
		reveal, _ := strconv.ParseBool(r.URL.Query().Get("reveal"))
		list, err := a.envList(ref, reveal)
		if err != nil {
			return err
		}
		return writeJSON(w, list)
	case rest == "" && r.Method == http.MethodPut:
		body, err := readBody(w, r)
		if err != nil {
			return err
		}
		changes, err := decodeEnvChanges(body)
		if err != nil {
			return err
		}
		return a.changeEnv(w, name, changes)
	case rest != "" && r.Method == http.MethodDelete:
		if err := checkEnvName(rest); err != nil {
			return err
		}
		return a.changeEnv(w, name, map[string]*string{rest: nil})
	case rest == "":
		return apiError(http.StatusMethodNotAllowed, "env: use GET, or PUT with a JSON object of names to values (null unsets)")
	}
	return apiError(http.StatusMethodNotAllowed, "env/<NAME>: use DELETE")
}

// decodeEnvChanges reads {"NAME": "value" | null, ...}.
func decodeEnvChanges(body []byte) (map[string]*string, error) {
	var changes map[string]*string
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&changes); err != nil {
		return nil, apiError(http.StatusBadRequest, fmt.Sprintf("body: %v: send a JSON object of env names to string values, null to unset, e.g. {\"GREETING\": \"hi\", \"OLD\": null}", err))
	}
	if changes == nil {
		return nil, apiError(http.StatusBadRequest, "body: send a JSON object of env names to string values, null to unset")
	}
	if len(changes) == 0 {
		return nil, apiError(http.StatusBadRequest, "body: the object names no env var")
	}
	set := map[string]string{}
	for k, v := range changes {
		if err := checkEnvName(k); err != nil {
			return nil, err
		}
		if v != nil {
			set[k] = *v
		}
	}
	return changes, checkEnvValues(set)
}

// changeEnv applies env changes to the store and rolls the service over.
func (a *App) changeEnv(w http.ResponseWriter, name string, changes map[string]*string) error {
	defer a.lockChanges()()
	ref, err := a.serviceRefLocked(name)
	if err != nil {
		return err
	}
	var names []string
	for k := range changes {
		if _, ok := ref.cfg.Env[k]; ok {
			names = append(names, k)
		}
	}
	if len(names) > 0 {
		sort.Strings(names)
		return apiError(http.StatusConflict, fmt.Sprintf("env %s: set in the config (Caddyfile), which wins over the API: change it there", strings.Join(names, ", ")))
	}
	var missing []string
	_, err = a.st.UpdateService(name, func(s *store.Service) error {
		missing = missing[:0]
		if s.Env == nil {
			s.Env = map[string]string{}
		}
		for k, v := range changes {
			if v == nil {
				if _, ok := s.Env[k]; !ok {
					missing = append(missing, k)
				}
				delete(s.Env, k)
				continue
			}
			s.Env[k] = *v
		}
		if len(missing) == len(changes) {
			// Nothing to change: don't write, don't roll over.
			return apiError(http.StatusNotFound, fmt.Sprintf("env %s: not set through the API", strings.Join(missing, ", ")))
		}
		if err := checkEnvTotal(s.Env); err != nil {
			return err
		}
		// The whole config must still be valid before anything is written.
		cfg := effective(ref.cfg, s.Env)
		if ref.src != nil {
			cfg.Image = "built-from-git"
		}
		if err := cfg.Validate(); err != nil {
			return apiError(http.StatusBadRequest, err.Error())
		}
		return nil
	})
	if err != nil {
		return storeError(err)
	}
	if err := a.applyRef(ref, "env"); err != nil {
		return apiError(http.StatusInternalServerError, fmt.Sprintf("env of %s was stored but the service cannot apply it: %v", name, err))
	}
	list, err := a.envList(ref, false)
	if err != nil {
		return err
	}
	if revs, err := a.st.Revisions(name); err == nil && len(revs) > 0 {
		list.Revision = revs[len(revs)-1].Seq
	}
	return writeJSON(w, list)
}

func (a *App) envList(ref *serviceRef, reveal bool) (EnvList, error) {
	stored, err := a.storedEnv(ref.cfg.Name)
	if err != nil {
		return EnvList{}, storeError(err)
	}
	list := EnvList{Service: ref.cfg.Name, Env: []EnvVar{}, Revealed: reveal}
	add := func(env map[string]string, source string) {
		for k, v := range env {
			if source == "api" {
				if _, shadowed := ref.cfg.Env[k]; shadowed {
					continue
				}
			}
			ev := EnvVar{Name: k, Source: source}
			if reveal {
				ev.Value = v
			}
			list.Env = append(list.Env, ev)
		}
	}
	add(ref.cfg.Env, "config")
	add(stored, "api")
	sort.Slice(list.Env, func(i, j int) bool { return list.Env[i].Name < list.Env[j].Name })
	return list, nil
}

// RevisionInfo is a revision as the API shows it: env names, not values.
type RevisionInfo struct {
	Seq     int      `json:"seq"`
	ID      string   `json:"id"`
	Image   string   `json:"image"`
	Env     []string `json:"env"`
	Reason  string   `json:"reason"`
	Build   int      `json:"build,omitempty"`
	Created string   `json:"created"`
	Current bool     `json:"current"`
}

func revisionRoutes(w http.ResponseWriter, r *http.Request, name, action string) error {
	a, err := runningApp()
	if err != nil {
		return err
	}
	a.mu.Lock()
	ref, err := a.serviceRefLocked(name)
	a.mu.Unlock()
	if err != nil {
		return err
	}
	switch action {
	case "revisions":
		if r.Method != http.MethodGet {
			return apiError(http.StatusMethodNotAllowed, "revisions: use GET")
		}
		revs, err := a.st.Revisions(name)
		if err != nil {
			return storeError(err)
		}
		running := ""
		if svc := ref.svc.Load(); svc != nil {
			running = svc.Snapshot().Revision
		}
		out := []RevisionInfo{}
		for i := len(revs) - 1; i >= 0; i-- {
			rv := revs[i]
			info := RevisionInfo{Seq: rv.Seq, ID: rv.ID, Image: rv.Image, Env: []string{}, Reason: rv.Reason, Build: rv.Build,
				Created: rv.Created.Format("2006-01-02T15:04:05Z07:00"), Current: rv.ID == running && i == len(revs)-1}
			for k := range rv.Env {
				info.Env = append(info.Env, k)
			}
			sort.Strings(info.Env)
			out = append(out, info)
		}
		return writeJSON(w, out)
	case "rollback":
		if r.Method != http.MethodPost {
			return apiError(http.StatusMethodNotAllowed, "rollback: use POST with {\"revision\": <seq>}")
		}
		body, err := readBody(w, r)
		if err != nil {
			return err
		}
		var req struct {
			Revision int `json:"revision"`
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := decodeStrict(body, &req); err != nil {
				return apiError(http.StatusBadRequest, fmt.Sprintf("body: %v: send {\"revision\": <seq>} (or nothing: the revision before the current one)", err))
			}
		}
		return a.rollback(w, name, req.Revision)
	}
	return apiError(http.StatusNotFound, fmt.Sprintf("unknown action %q", action))
}

// rollback runs an earlier revision again: its image and its API env.
// seq 0 means the newest revision that differs from the current one.
func (a *App) rollback(w http.ResponseWriter, name string, seq int) error {
	defer a.lockChanges()()
	ref, err := a.serviceRefLocked(name)
	if err != nil {
		return err
	}
	revs, err := a.st.Revisions(name)
	if err != nil {
		return storeError(err)
	}
	var target *store.Revision
	if seq == 0 {
		if len(revs) > 0 {
			last := revs[len(revs)-1]
			for i := len(revs) - 2; i >= 0; i-- {
				if revs[i].ID != last.ID {
					target = &revs[i]
					break
				}
			}
		}
		if target == nil {
			return apiError(http.StatusConflict, fmt.Sprintf("service %s has no earlier revision to roll back to", name))
		}
	} else {
		for i := range revs {
			if revs[i].Seq == seq {
				target = &revs[i]
			}
		}
		if target == nil {
			return apiError(http.StatusNotFound, fmt.Sprintf("revision %d of %s is not kept (see GET /podcell/services/%s/revisions)", seq, name, name))
		}
	}
	// Names the config sets win anyway; the rest of the env comes back.
	env := map[string]string{}
	for k, v := range target.Env {
		if _, inConfig := ref.cfg.Env[k]; !inConfig {
			env[k] = v
		}
	}
	switch {
	case ref.src != nil:
		if err := ref.dep.rollback(target.Image, target.Build, target.Seq); err != nil {
			return err
		}
	case ref.api != nil:
		spec := *ref.api
		spec.Image = target.Image
		specJSON, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		if _, err := a.st.UpdateService(name, func(s *store.Service) error { s.Spec, s.Env = specJSON, env; return nil }); err != nil {
			return storeError(err)
		}
		if err := a.replaceAPIServiceLocked(name, spec, ref, "rollback"); err != nil {
			return apiError(http.StatusInternalServerError, fmt.Sprintf("rollback of %s: %v", name, err))
		}
		return writeJSON(w, statusFor(a, name))
	case target.Image != ref.cfg.Image:
		return apiError(http.StatusConflict, fmt.Sprintf("revision %d ran image %s but the config sets image %s: change the image in the config", target.Seq, target.Image, ref.cfg.Image))
	}
	if _, err := a.st.UpdateService(name, func(s *store.Service) error { s.Env = env; return nil }); err != nil {
		return storeError(err)
	}
	if err := a.applyRef(ref, "rollback"); err != nil {
		return apiError(http.StatusInternalServerError, fmt.Sprintf("rollback of %s: %v", name, err))
	}
	if ref.dep != nil {
		// The rollback moved the window of images rollback can reach.
		go ref.dep.collectImages("rollback")
	}
	return writeJSON(w, statusFor(a, name))
}

// statusFor is a service's live state, or its bare name before it runs.
func statusFor(a *App, name string) ServiceStatus {
	if svc := a.sc.Service(name); svc != nil {
		st := statusOf(svc)
		st.Source = sourceOf(a, name)
		st.Deploy = deployStatus(name)
		return st
	}
	return ServiceStatus{Name: name, States: map[string]int{}, Instances: []scaler.InstanceSnapshot{}, Source: sourceOf(a, name), Deploy: deployStatus(name)}
}
