package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/store"
)

// Cron jobs through the admin API:
//
//	GET    /podcell/services/<name>/cron              the jobs, with next fire time and last run
//	GET    /podcell/services/<name>/cron/<job>/runs   the job's recent runs, newest first
//	POST   /podcell/services/<name>/cron/<job>/run    run the job now
//	PUT    /podcell/services/<name>/cron/<job>        add or change a job (kept in the store)
//	DELETE /podcell/services/<name>/cron/<job>        remove a job the API added
//
// As with env vars, the config wins: the API cannot change or remove a
// job the config declares.

// CronJobStatus is a job as the API shows it.
type CronJobStatus struct {
	CronJob        // the definition, defaults filled in
	Service string `json:"service"`
	// Source says who declared the job: "config" or "api".
	Source  string     `json:"source"`
	Next    *time.Time `json:"next,omitempty"`
	LastRun *cron.Run  `json:"last_run,omitempty"`
}

// CronTriggered answers a manual run.
type CronTriggered struct {
	Service   string    `json:"service"`
	Job       string    `json:"job"`
	Triggered time.Time `json:"triggered"`
}

func cronRoutes(w http.ResponseWriter, r *http.Request, name, rest string) error {
	a, err := runningApp()
	if err != nil {
		return err
	}
	job, action, _ := strings.Cut(rest, "/")
	switch {
	case job == "" && r.Method == http.MethodGet:
		a.mu.Lock()
		defer a.mu.Unlock()
		ref, err := a.serviceRefLocked(name)
		if err != nil {
			return err
		}
		out := []CronJobStatus{}
		for _, e := range a.cronJobsLocked(ref) {
			out = append(out, a.cronStatus(e))
		}
		return writeJSON(w, out)
	case job == "":
		return apiError(http.StatusMethodNotAllowed, "cron: use GET; a job is at cron/<job>")
	case action == "" && r.Method == http.MethodGet:
		e, err := a.cronJob(name, job)
		if err != nil {
			return err
		}
		return writeJSON(w, a.cronStatus(e))
	case action == "" && r.Method == http.MethodPut:
		body, err := readBody(w, r)
		if err != nil {
			return err
		}
		return a.putCronJob(w, name, job, body)
	case action == "" && r.Method == http.MethodDelete:
		return a.deleteCronJob(w, name, job)
	case action == "":
		return apiError(http.StatusMethodNotAllowed, "cron/<job>: use GET, PUT (add or change a job) or DELETE")
	case action == "runs" && r.Method == http.MethodGet:
		if _, err := a.cronJob(name, job); err != nil {
			return err
		}
		runs := a.cron.History(name, job)
		out := make([]cron.Run, 0, len(runs))
		for i := len(runs) - 1; i >= 0; i-- {
			out = append(out, runs[i])
		}
		return writeJSON(w, out)
	case action == "run" && r.Method == http.MethodPost:
		if _, err := a.cronJob(name, job); err != nil {
			return err
		}
		now := time.Now()
		if err := a.cron.Trigger(name, job); err != nil {
			return apiError(http.StatusConflict, err.Error())
		}
		return writeJSONStatus(w, http.StatusAccepted, CronTriggered{Service: name, Job: job, Triggered: now})
	case action == "runs", action == "run":
		return apiError(http.StatusMethodNotAllowed, fmt.Sprintf("cron/<job>/%s: use %s", action, map[string]string{"runs": "GET", "run": "POST"}[action]))
	}
	return apiError(http.StatusNotFound, fmt.Sprintf("unknown cron action %q: use runs (GET) or run (POST)", action))
}

// cronJob finds a job of a service of the running config.
func (a *App) cronJob(service, job string) (cronEntry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ref, err := a.serviceRefLocked(service)
	if err != nil {
		return cronEntry{}, err
	}
	for _, e := range a.cronJobsLocked(ref) {
		if e.job.Name == job {
			return e, nil
		}
	}
	return cronEntry{}, apiError(http.StatusNotFound, fmt.Sprintf("cron job %q of service %s does not exist (see GET /podcell/services/%s/cron)", job, service, service))
}

func (a *App) cronStatus(e cronEntry) CronJobStatus {
	st := CronJobStatus{CronJob: cronJobOf(e.job), Service: e.job.Service, Source: e.source}
	if next, ok := a.cron.Next(e.job.Service, e.job.Name); ok {
		st.Next = &next
	}
	if runs := a.cron.History(e.job.Service, e.job.Name); len(runs) > 0 {
		st.LastRun = &runs[len(runs)-1]
	}
	return st
}

// putCronJob adds (201) or changes (200) a job the API declares.
func (a *App) putCronJob(w http.ResponseWriter, service, name string, body []byte) error {
	var c CronJob
	if err := decodeStrict(body, &c); err != nil {
		return apiError(http.StatusBadRequest, fmt.Sprintf("body: %v: send the job as JSON, e.g. {\"schedule\": \"*/5 * * * *\", \"method\": \"POST\", \"path\": \"/tasks/poll\"}", err))
	}
	if c.Name != "" && c.Name != name {
		return apiError(http.StatusBadRequest, fmt.Sprintf("name %q in the body differs from %q in the path: leave it out or make them equal", c.Name, name))
	}
	c.Name = name
	if err := c.job(service).Validate(); err != nil {
		return apiError(http.StatusBadRequest, err.Error())
	}
	defer a.lockChanges()()
	ref, err := a.serviceRefLocked(service)
	if err != nil {
		return err
	}
	existed := false
	for _, e := range a.cronJobsLocked(ref) {
		if e.job.Name != name {
			continue
		}
		if e.source == "config" {
			return apiError(http.StatusConflict, fmt.Sprintf("cron job %q of service %s is declared in the config (Caddyfile): change it there", name, service))
		}
		existed = true
	}
	if err := a.st.PutCronJob(service, name, c); err != nil {
		return storeError(err)
	}
	if err := a.syncCronLocked(); err != nil {
		return apiError(http.StatusInternalServerError, fmt.Sprintf("cron job %q of service %s was stored but is not scheduled: %v", name, service, err))
	}
	code := http.StatusCreated
	if existed {
		code = http.StatusOK
	}
	return writeJSONStatus(w, code, a.cronStatus(cronEntry{c.job(service), "api"}))
}

// deleteCronJob removes a job the API declared, with its history.
func (a *App) deleteCronJob(w http.ResponseWriter, service, name string) error {
	defer a.lockChanges()()
	ref, err := a.serviceRefLocked(service)
	if err != nil {
		return err
	}
	for _, c := range ref.cron {
		if c.job(service).Name == name {
			return apiError(http.StatusConflict, fmt.Sprintf("cron job %q of service %s is declared in the config (Caddyfile): remove it there", name, service))
		}
	}
	if err := a.st.DeleteCronJob(service, name); errors.Is(err, store.ErrNotFound) {
		return apiError(http.StatusNotFound, fmt.Sprintf("cron job %q of service %s was not added through the API", name, service))
	} else if err != nil {
		return storeError(err)
	}
	if err := a.syncCronLocked(); err != nil {
		return apiError(http.StatusInternalServerError, fmt.Sprintf("cron job %q of service %s was deleted but may still fire until the next reload: %v", name, service, err))
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
