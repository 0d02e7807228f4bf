package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Service is what the store holds of one service: the settings of a
// service declared through the admin API, and the env vars set through it
// (for any service, also one the Caddyfile declares).
type Service struct {
	// V is the record's format (ServiceFormat when written by this code).
	// Format 1 records, written before the field existed, have none: their
	// Spec is the podcell handler's JSON. From format 2 on, Spec is the
	// controller's ServiceSpec, which the handler's JSON embeds but which
	// does not change with it. The controller migrates older records
	// when it opens the store.
	V    int    `json:"v,omitempty"`
	Name string `json:"name"`
	// Spec is the service's settings (see V), for a service declared
	// through the admin API; empty otherwise.
	Spec json.RawMessage `json:"spec,omitempty"`
	// Env are the env vars set through the admin API.
	Env     map[string]string `json:"env,omitempty"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
	// Version counts the writes, so a reader can tell two states apart.
	Version uint64 `json:"version"`
}

func serviceKey(name string) string { return "service/" + name }

// Service reads one service; ErrNotFound if the store has none by that name.
func (s *Store) Service(name string) (Service, error) {
	var svc Service
	err := s.Get(serviceKey(name), &svc)
	return svc, err
}

// Services lists every stored service by name.
func (s *Store) Services() ([]Service, error) {
	return listOf[Service](s, "service/")
}

// UpdateService changes one service atomically: fn gets the stored state
// (Version 0 when there is none) and edits it; an error from fn aborts and
// nothing is written. Concurrent updates are serialized: fn may run again
// on the newer state, so it must only edit what it is given. A service
// left with neither spec nor env is deleted.
func (s *Store) UpdateService(name string, fn func(svc *Service) error) (Service, error) {
	var out Service
	err := s.update(func(txn *badger.Txn) error {
		var svc Service
		if err := getJSON(txn, serviceKey(name), &svc); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		svc.Name = name
		if err := fn(&svc); err != nil {
			return err
		}
		svc.Name = name
		svc.V = ServiceFormat
		now := time.Now().UTC()
		if svc.Created.IsZero() {
			svc.Created = now
		}
		svc.Updated = now
		svc.Version++
		out = svc
		if len(svc.Spec) == 0 && len(svc.Env) == 0 {
			return txn.Delete([]byte(serviceKey(name)))
		}
		return setJSON(txn, serviceKey(name), &svc)
	})
	return out, err
}

// DeleteService removes a service with its revisions and everything else
// kept under its name (cron jobs, their runs, the cron secret and builds).
func (s *Store) DeleteService(name string) error {
	return s.update(func(txn *badger.Txn) error {
		for _, k := range []string{serviceKey(name), cronSecretKey(name)} {
			if err := txn.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for _, p := range []string{revisionPrefix(name), cronJobPrefix(name), "cronrun/" + name + "/", buildPrefix(name)} {
			if err := deletePrefix(txn, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// Revision is one state a service ran: what the scaler ran (its revision
// id and image) and the API's env vars at the time, so it can be rolled
// back to.
type Revision struct {
	V       int               `json:"v,omitempty"` // the record's format: RevisionFormat
	Seq     int               `json:"seq"`
	ID      string            `json:"id"` // the scaler's revision
	Image   string            `json:"image"`
	Env     map[string]string `json:"env,omitempty"`
	Reason  string            `json:"reason"` // config, env, deploy, rollback, api
	Build   int               `json:"build,omitempty"`
	Created time.Time         `json:"created"`
}

// MaxRevisions is how many revisions are kept per service.
const MaxRevisions = 50

func revisionPrefix(service string) string { return "revision/" + service + "/" }

func revisionKey(service string, seq int) string {
	return fmt.Sprintf("%s%010d", revisionPrefix(service), seq)
}

// AddRevision records that service now runs r, unless the newest record
// already says so (a reload that changes nothing is not a revision). It
// returns the stored record and whether it is new; the oldest records
// beyond MaxRevisions are dropped.
func (s *Store) AddRevision(service string, r Revision) (Revision, bool, error) {
	added := false
	err := s.update(func(txn *badger.Txn) error {
		added = false
		var revs []*Revision
		if err := listJSON(txn, revisionPrefix(service), func() any {
			revs = append(revs, new(Revision))
			return revs[len(revs)-1]
		}); err != nil {
			return err
		}
		if n := len(revs); n > 0 && revs[n-1].ID == r.ID {
			r = *revs[n-1]
			return nil
		}
		r.Seq = 1
		if n := len(revs); n > 0 {
			r.Seq = revs[n-1].Seq + 1
		}
		if r.Created.IsZero() {
			r.Created = time.Now().UTC()
		}
		r.V = RevisionFormat
		if err := setJSON(txn, revisionKey(service, r.Seq), &r); err != nil {
			return err
		}
		for i := 0; i < len(revs)+1-MaxRevisions; i++ {
			if err := txn.Delete([]byte(revisionKey(service, revs[i].Seq))); err != nil {
				return err
			}
		}
		added = true
		return nil
	})
	return r, added, err
}

// Revisions lists a service's revisions, oldest first.
func (s *Store) Revisions(service string) ([]Revision, error) {
	return listOf[Revision](s, revisionPrefix(service))
}

// Revision reads one revision by its sequence number.
func (s *Store) Revision(service string, seq int) (Revision, error) {
	var r Revision
	err := s.Get(revisionKey(service, seq), &r)
	return r, err
}
