package controller

import (
	"sort"

	"go.uber.org/zap"

	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/store"
)

// Scheduled calls (docs/cron.md). The controller's scheduler lives as long
// as the controller, across reloads; each change of the desired state
// hands it every job of the declared services, and a job's requests go to
// the service's gateway (Gateway.Do), in process, as user traffic does.

// cronHistory is how many runs per job the store keeps, as many as the
// scheduler keeps in memory.
const cronHistory = 50

func (c *Controller) newScheduler() (*cron.Scheduler, error) {
	log := c.log.Named("cron")
	return cron.New(cron.Options{
		Service: func(name string) cron.Doer {
			if gw := c.Route(name); gw != nil {
				return gw
			}
			return nil // not a nil *Gateway in a non-nil interface
		},
		Secret: func(service string) string {
			secret, err := c.st.CronSecret(service)
			if err != nil {
				log.Error("reading the cron secret; the call goes without it", zap.String("service", service), zap.Error(err))
			}
			return secret
		},
		Store:       cronStore{c.st},
		OnRun:       func(r cron.Run) { c.hub.Metrics.CronRun(r.Service, r.Job, string(r.Status)) },
		Logger:      log,
		HistorySize: cronHistory,
	})
}

// cronEntry is one job of a service and who declared it.
type cronEntry struct {
	job    cron.Job
	source string // "config" or "api"
}

// cronJobsLocked lists a service's jobs: the declaration's, then those the
// admin API stored. A declared job shadows a stored one of the same name,
// and a stored job that is no longer valid is left out (and logged), so
// that one bad record cannot stop every other job.
func (c *Controller) cronJobsLocked(s *service) []cronEntry {
	stored, err := store.CronJobs[cron.Job](c.st, s.name)
	if err != nil {
		c.log.Error("reading cron jobs from the store; the stored ones do not run", zap.String("service", s.name), zap.Error(err))
	}
	return c.mergeCronJobs(s, stored)
}

// mergeCronJobs is cronJobsLocked with the service's stored jobs read.
func (c *Controller) mergeCronJobs(s *service, stored []cron.Job) []cronEntry {
	var out []cronEntry
	seen := map[string]bool{}
	for _, cj := range s.spec.Cron {
		j := cj.For(s.name)
		out = append(out, cronEntry{j, "config"})
		seen[j.Name] = true
	}
	for _, cj := range stored {
		j := cj.For(s.name)
		if seen[j.Name] {
			c.log.Warn("the config declares a cron job the admin API also stored; the config wins", zap.String("service", s.name), zap.String("job", j.Name))
			continue
		}
		if err := j.Validate(); err != nil {
			c.log.Error("a stored cron job is invalid; it does not run", zap.Error(err))
			continue
		}
		out = append(out, cronEntry{j, "api"})
		seen[j.Name] = true
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].job.Name < out[j].job.Name })
	return out
}

// syncCronLocked gives the scheduler every job of the declared services.
// Unchanged jobs keep their next fire time and their runs in progress,
// so calling it again is harmless. Before the first Start it does
// nothing: a config that fails to start leaves no job scheduled. The
// stored jobs are read in one scan, not one per service.
func (c *Controller) syncCronLocked() error {
	if !c.started {
		return nil
	}
	stored, err := store.AllCronJobs[cron.Job](c.st)
	if err != nil {
		c.log.Error("reading cron jobs from the store; the stored ones do not run", zap.Error(err))
	}
	var jobs []cron.Job
	for _, s := range c.services {
		for _, e := range c.mergeCronJobs(s, stored[s.name]) {
			jobs = append(jobs, e.job)
		}
	}
	return c.cron.Set(jobs)
}

// cronStore keeps the scheduler's run history in the store.
type cronStore struct{ st *store.Store }

func (c cronStore) SaveRun(r cron.Run) error {
	return c.st.AddCronRun(r.Service, r.Job, r.Started, r.Scheduled, r, cronHistory)
}

func (c cronStore) LoadRuns(service, job string) ([]cron.Run, error) {
	return store.CronRuns[cron.Run](c.st, service, job)
}

var (
	_ cron.Store = cronStore{}
	_ cron.Doer  = (*Gateway)(nil)
)
