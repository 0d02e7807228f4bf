package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Cron keys. The store keeps the values as JSON without knowing their
// types, so it does not depend on the scheduler.
//
//	cron/<service>/<job>               a job added through the admin API
//	cronrun/<service>/<job>/<time>     one run of a job, keys in time order
//	cronsecret/<service>               the service's cron secret

func cronJobPrefix(service string) string { return "cron/" + service + "/" }

func cronRunPrefix(service, job string) string { return "cronrun/" + service + "/" + job + "/" }

func cronSecretKey(service string) string { return "cronsecret/" + service }

// PutCronJob stores a job added through the admin API (v: a JSON object,
// stored with "v": CronJobFormat).
func (s *Store) PutCronJob(service, job string, v any) error {
	return s.update(func(txn *badger.Txn) error {
		return setVersioned(txn, cronJobPrefix(service)+job, v, CronJobFormat)
	})
}

// CronJobs decodes every job of service added through the admin API as a
// T, by name. (A function, not a method: methods cannot take types.)
func CronJobs[T any](s *Store, service string) ([]T, error) {
	return listOf[T](s, cronJobPrefix(service))
}

// AllCronJobs decodes the jobs of every service added through the admin
// API, as T, by service and then name: one scan, which costs the same
// with 1 or 1,000 services that have none.
func AllCronJobs[T any](s *Store) (map[string][]T, error) {
	out := map[string][]T{}
	var (
		services []string
		jobs     []*T
	)
	err := s.db.View(func(txn *badger.Txn) error {
		return listKeyed(txn, "cron/", func(key string) any {
			service, _, _ := strings.Cut(key, "/")
			services = append(services, service)
			jobs = append(jobs, new(T))
			return jobs[len(jobs)-1]
		})
	})
	if err != nil {
		return nil, err
	}
	for i, j := range jobs {
		out[services[i]] = append(out[services[i]], *j)
	}
	return out, nil
}

// DeleteCronJob removes a job and its runs, so a new job of the same name
// starts without the old one's history. ErrNotFound if there is no such job.
func (s *Store) DeleteCronJob(service, job string) error {
	return s.update(func(txn *badger.Txn) error {
		key := []byte(cronJobPrefix(service) + job)
		if _, err := txn.Get(key); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if err := txn.Delete(key); err != nil {
			return err
		}
		return deletePrefix(txn, cronRunPrefix(service, job))
	})
}

// AddCronRun stores one run of a job and drops the oldest beyond keep. The
// key orders runs by start time; the scheduled time tells apart the
// records one tick can make at the same instant (a missed one and a run).
func (s *Store) AddCronRun(service, job string, started, scheduled time.Time, v any, keep int) error {
	prefix := cronRunPrefix(service, job)
	key := fmt.Sprintf("%s%020d-%020d", prefix, started.UnixNano(), scheduled.UnixNano())
	return s.update(func(txn *badger.Txn) error {
		if err := setJSON(txn, key, v); err != nil {
			return err
		}
		return keepNewest(txn, prefix, keep)
	})
}

// CronRuns decodes a job's stored runs as T, oldest first.
func CronRuns[T any](s *Store, service, job string) ([]T, error) {
	return listOf[T](s, cronRunPrefix(service, job))
}

// CronSecret returns the service's cron secret (32 random bytes as hex),
// made the first time it is asked for. It lasts until the service is
// deleted, so the service's env, which carries it, does not change.
func (s *Store) CronSecret(service string) (string, error) {
	var secret string
	err := s.Get(cronSecretKey(service), &secret)
	if !errors.Is(err, ErrNotFound) {
		return secret, err
	}
	err = s.update(func(txn *badger.Txn) error {
		err := getJSON(txn, cronSecretKey(service), &secret)
		if !errors.Is(err, ErrNotFound) {
			return err // made meanwhile, or a real error
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		secret = hex.EncodeToString(b)
		return setJSON(txn, cronSecretKey(service), secret)
	})
	return secret, err
}
