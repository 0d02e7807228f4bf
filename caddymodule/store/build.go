package store

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Builds of git services, so a service's deploy history and its build logs
// outlive a restart.

func buildPrefix(service string) string { return "build/" + service + "/" }

// PutBuild stores build id of service (v: its record and log, a JSON
// object, stored with "v": BuildFormat) and drops the oldest beyond keep.
func (s *Store) PutBuild(service string, id int, v any, keep int) error {
	prefix := buildPrefix(service)
	return s.update(func(txn *badger.Txn) error {
		if err := setVersioned(txn, fmt.Sprintf("%s%010d", prefix, id), v, BuildFormat); err != nil {
			return err
		}
		return keepNewest(txn, prefix, keep)
	})
}

// Builds decodes a service's stored builds as T, oldest first.
func Builds[T any](s *Store, service string) ([]T, error) {
	return listOf[T](s, buildPrefix(service))
}
