// Package store keeps podcell's state in an embedded, encrypted Badger
// database: services declared through the admin API, env vars, revisions,
// cron definitions and run history. Every value is encrypted at rest with
// Badger's AES encryption, so env values never reach the disk in clear.
//
// A process opens a data directory once; the Caddy app keeps the Store in a
// usage pool because a config reload opens the new config before it closes
// the old one, and Badger locks its directory.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"
)

// ErrNotFound is returned for a key that holds nothing.
var ErrNotFound = errors.New("not found")

// Store is an open database.
type Store struct {
	db   *badger.DB
	dir  string
	log  *zap.Logger
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	// wmu serializes this process's read-modify-write transactions: Badger's
	// optimistic ones would otherwise fail with conflicts under a burst of
	// API writers to one service. Only one process can open the directory.
	wmu sync.Mutex
}

// gcEvery is how often the value log is garbage-collected. Our values are
// small and few, so the log grows slowly; Badger never reclaims it alone.
const gcEvery = 10 * time.Minute

// Open opens (or creates) the database in dir, encrypted with key (16, 24
// or 32 bytes: AES-128/192/256). A key that does not match the one the
// database was created with is an error; the data stays as it was.
func Open(dir string, key []byte, log *zap.Logger) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("store encryption key is %d bytes: it must be 16, 24 or 32 bytes (AES-128/192/256)", len(key))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store directory %s: %w", dir, err)
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log.Sugar()}).
		WithEncryptionKey(key).
		// Small-store settings: a handful of services, not a data set.
		WithMemTableSize(4 << 20).
		WithValueLogFileSize(16 << 20).
		// Below the 4 MiB memtable's batch limit (15 %).
		WithValueThreshold(64 << 10).
		WithNumCompactors(2).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		// Encryption needs a block cache (Badger panics without one).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(4 << 20).
		WithCompression(options.None).
		// Every write reaches the disk before the API answers.
		WithSyncWrites(true)
	db, err := badger.Open(opts)
	if err != nil {
		if errors.Is(err, badger.ErrEncryptionKeyMismatch) {
			return nil, fmt.Errorf("store %s was created with another encryption key: give podcell the key it was created with (encryption_key_file or encryption_key_env); the data is untouched", dir)
		}
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			// Badger's directory lock (one process at a time); its error
			// wraps the flock errno as text only, so its words are the test.
			return nil, fmt.Errorf("store %s is in use by another process (a podcell running on this data_dir): stop it, or give this one another data_dir: %w", dir, err)
		}
		return nil, fmt.Errorf("opening store %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, log: log, stop: make(chan struct{})}
	s.wg.Add(1)
	go s.gcLoop()
	return s, nil
}

// Dir is the database's directory.
func (s *Store) Dir() string { return s.dir }

// Close stops the GC loop and closes the database.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		err = s.db.Close()
	})
	return err
}

func (s *Store) gcLoop() {
	defer s.wg.Done()
	t := time.NewTicker(gcEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// One rewrite per call: keep going while it finds garbage.
			for s.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// maxConflictRetries bounds retries of a transaction that lost a race with
// another writer; each retry re-reads, so no update is lost.
const maxConflictRetries = 20

// update runs fn in a read-write transaction, again from the start when a
// concurrent writer touched the same keys.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for range maxConflictRetries {
		err := s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("store: too many concurrent writers, try again")
}

func getJSON(txn *badger.Txn, key string, v any) error {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func setJSON(txn *badger.Txn, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set([]byte(key), b)
}

// listJSON decodes every value under prefix, in key order; newItem returns
// where to decode the next one.
func listJSON(txn *badger.Txn, prefix string, newItem func() any) error {
	return listKeyed(txn, prefix, func(string) any { return newItem() })
}

// listKeyed is listJSON for values whose key says more than their JSON:
// newItem gets each key, without the prefix.
func listKeyed(txn *badger.Txn, prefix string, newItem func(key string) any) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true, PrefetchSize: 16})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		v := newItem(strings.TrimPrefix(string(it.Item().Key()), prefix))
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, v) }); err != nil {
			return fmt.Errorf("store: decoding %s: %w", it.Item().Key(), err)
		}
	}
	return nil
}

// Record formats. Each kind of record has the format this code writes; a
// record written before formats existed has no "v" and is format 1. A
// change to a kind's JSON raises its format, and the controller migrates
// the older records when it opens the store (controller/migrate.go). A
// record of a newer format than this code's stops the store from opening
// (CheckFormats), so an older podcell never rewrites what it does not
// understand.
const (
	ServiceFormat  = 2 // 1: the spec was the podcell handler's JSON (see Service.V)
	RevisionFormat = 1
	BuildFormat    = 1
	CronJobFormat  = 1
)

// formats are the versioned kinds of records by key prefix. Cron runs and
// secrets are not versioned.
var formats = []struct {
	prefix, kind string
	format       int
}{
	{"service/", "service", ServiceFormat},
	{"revision/", "revision", RevisionFormat},
	{"build/", "build", BuildFormat},
	{"cron/", "cron job", CronJobFormat},
}

// CheckFormats refuses a store that holds a record of a newer format than
// this code writes, naming the record.
func (s *Store) CheckFormats() error {
	return s.db.View(func(txn *badger.Txn) error {
		for _, f := range formats {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(f.prefix)})
			for it.Rewind(); it.Valid(); it.Next() {
				var rec struct {
					V int `json:"v"`
				}
				if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &rec) }); err != nil {
					continue // not ours to judge: its reader reports it
				}
				if rec.V > f.format {
					key := strings.TrimPrefix(string(it.Item().Key()), f.prefix)
					it.Close()
					return fmt.Errorf("store: %s record %s has format %d, newer than this podcell's %d: run the podcell that wrote it, or a newer one",
						f.kind, key, rec.V, f.format)
				}
			}
			it.Close()
		}
		return nil
	})
}

// setVersioned is setJSON for a record whose type the store does not
// know (v marshals to a JSON object without a "v"): it adds "v": format.
func setVersioned(txn *badger.Txn, key string, v any, format int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) < 2 || b[0] != '{' {
		return fmt.Errorf("store: %s: a record must be a JSON object, not %.20s", key, b)
	}
	out := fmt.Appendf(nil, `{"v":%d`, format)
	if string(b) != "{}" {
		out = append(out, ',')
	}
	return txn.Set([]byte(key), append(out, b[1:]...))
}

// deletePrefix removes every key under prefix.
func deletePrefix(txn *badger.Txn, prefix string) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// keepNewest deletes the first keys under prefix (in key order, so the
// oldest where keys sort by time or sequence) beyond the last keep.
func keepNewest(txn *badger.Txn, prefix string, keep int) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for i := 0; i < len(keys)-keep; i++ {
		if err := txn.Delete(keys[i]); err != nil {
			return err
		}
	}
	return nil
}

// Get reads the JSON value at key into v.
func (s *Store) Get(key string, v any) error {
	return s.db.View(func(txn *badger.Txn) error { return getJSON(txn, key, v) })
}

// Put writes v as JSON at key.
func (s *Store) Put(key string, v any) error {
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, key, v) })
}

// Delete removes key.
func (s *Store) Delete(key string) error {
	return s.update(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) })
}

// List decodes every value under prefix, in key order.
func (s *Store) List(prefix string, newItem func() any) error {
	return s.db.View(func(txn *badger.Txn) error { return listJSON(txn, prefix, newItem) })
}

// listOf decodes every value under prefix as a T, in key order.
func listOf[T any](s *Store, prefix string) ([]T, error) {
	var items []*T
	err := s.List(prefix, func() any {
		items = append(items, new(T))
		return items[len(items)-1]
	})
	out := make([]T, len(items))
	for i, p := range items {
		out[i] = *p
	}
	return out, err
}

// badgerLogger sends Badger's messages to Caddy's log; its info messages
// (compactions, replays) are debug for us.
type badgerLogger struct{ l *zap.SugaredLogger }

func (b badgerLogger) Errorf(f string, v ...any)   { b.l.Errorf(f, v...) }
func (b badgerLogger) Warningf(f string, v ...any) { b.l.Warnf(f, v...) }
func (b badgerLogger) Infof(f string, v ...any)    { b.l.Debugf(f, v...) }
func (b badgerLogger) Debugf(f string, v ...any)   { b.l.Debugf(f, v...) }
