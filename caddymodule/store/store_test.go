package store

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func testKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func openT(t *testing.T, dir string, key []byte) *Store {
	t.Helper()
	s, err := Open(dir, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func setEnv(s *Store, name string, kv map[string]string) error {
	_, err := s.UpdateService(name, func(svc *Service) error {
		if svc.Env == nil {
			svc.Env = map[string]string{}
		}
		for k, v := range kv {
			svc.Env[k] = v
		}
		return nil
	})
	return err
}

func TestValuesSurviveReopen(t *testing.T) {
	dir, key := t.TempDir(), testKey(t)
	s := openT(t, dir, key)
	if err := setEnv(s, "hello", map[string]string{"GREETING": "hi"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddRevision("hello", Revision{ID: "r1", Image: "img:1", Reason: "config"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, dir, key)
	defer s.Close()
	svc, err := s.Service("hello")
	if err != nil {
		t.Fatal(err)
	}
	if svc.Env["GREETING"] != "hi" || svc.Version != 1 {
		t.Fatalf("after reopen: %+v", svc)
	}
	revs, err := s.Revisions("hello")
	if err != nil || len(revs) != 1 || revs[0].ID != "r1" || revs[0].Seq != 1 {
		t.Fatalf("revisions after reopen: %+v, %v", revs, err)
	}
}

// containsInFiles reports whether any file under dir contains needle.
func containsInFiles(t *testing.T, dir string, needle []byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestEnvValuesAreNotInTheRawFiles(t *testing.T) {
	secret := "s3cret-" + hex.EncodeToString(testKey(t)[:8])

	// Control: without encryption the same write is visible in the files,
	// so the search below would find the value if it were there.
	plainDir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(plainDir).WithLogger(nil).WithSyncWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte(secret)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if !containsInFiles(t, plainDir, []byte(secret)) {
		t.Fatal("control: an unencrypted Badger write is not found in its files; the check below proves nothing")
	}

	dir := t.TempDir()
	s := openT(t, dir, testKey(t))
	if err := setEnv(s, "hello", map[string]string{"API_TOKEN": secret}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if containsInFiles(t, dir, []byte(secret)) {
		t.Fatal("an env value is readable in the store's files")
	}
	if containsInFiles(t, dir, []byte("API_TOKEN")) {
		t.Fatal("an env name is readable in the store's files")
	}
}

func TestWrongKeyIsAClearErrorAndKeepsTheData(t *testing.T) {
	dir, key := t.TempDir(), testKey(t)
	s := openT(t, dir, key)
	if err := setEnv(s, "hello", map[string]string{"A": "1"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err := Open(dir, testKey(t), nil)
	if err == nil {
		t.Fatal("opened the store with another key")
	}
	if !strings.Contains(err.Error(), "another encryption key") {
		t.Fatalf("unclear error: %v", err)
	}

	s = openT(t, dir, key)
	defer s.Close()
	svc, err := s.Service("hello")
	if err != nil || svc.Env["A"] != "1" {
		t.Fatalf("data after a wrong-key attempt: %+v, %v", svc, err)
	}
}

func TestConcurrentWritersLoseNoUpdate(t *testing.T) {
	s := openT(t, t.TempDir(), testKey(t))
	defer s.Close()
	const writers, each = 16, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				errs <- setEnv(s, "hello", map[string]string{fmt.Sprintf("K_%d_%d", w, i): "v"})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	svc, err := s.Service("hello")
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Env) != writers*each || svc.Version != writers*each {
		t.Fatalf("%d vars and version %d after %d writes", len(svc.Env), svc.Version, writers*each)
	}
}

func TestUpdateErrorWritesNothing(t *testing.T) {
	s := openT(t, t.TempDir(), testKey(t))
	defer s.Close()
	if err := setEnv(s, "hello", map[string]string{"A": "1"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.UpdateService("hello", func(svc *Service) error {
		svc.Env["A"] = "2"
		return fmt.Errorf("refused")
	})
	if err == nil || err.Error() != "refused" {
		t.Fatalf("err = %v", err)
	}
	svc, _ := s.Service("hello")
	if svc.Env["A"] != "1" || svc.Version != 1 {
		t.Fatalf("a refused update changed the state: %+v", svc)
	}
}

func TestEmptyServiceIsDeleted(t *testing.T) {
	s := openT(t, t.TempDir(), testKey(t))
	defer s.Close()
	if err := setEnv(s, "hello", map[string]string{"A": "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateService("hello", func(svc *Service) error { delete(svc.Env, "A"); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Service("hello"); err != ErrNotFound {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestRevisions(t *testing.T) {
	s := openT(t, t.TempDir(), testKey(t))
	defer s.Close()
	r, added, err := s.AddRevision("hello", Revision{ID: "a"})
	if err != nil || !added || r.Seq != 1 {
		t.Fatalf("first: %+v %v %v", r, added, err)
	}
	if r, added, _ = s.AddRevision("hello", Revision{ID: "a"}); added || r.Seq != 1 {
		t.Fatalf("same revision again was recorded: %+v", r)
	}
	for i := range MaxRevisions + 5 {
		if _, _, err := s.AddRevision("hello", Revision{ID: fmt.Sprint("r", i)}); err != nil {
			t.Fatal(err)
		}
	}
	revs, err := s.Revisions("hello")
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != MaxRevisions || revs[len(revs)-1].Seq != MaxRevisions+6 || revs[0].Seq != 7 {
		t.Fatalf("kept %d revisions, seq %d..%d", len(revs), revs[0].Seq, revs[len(revs)-1].Seq)
	}
	if _, err := s.Revision("hello", 1); err != ErrNotFound {
		t.Fatalf("the oldest revision was not dropped: %v", err)
	}
	if err := s.DeleteService("hello"); err != nil {
		t.Fatal(err)
	}
	if revs, _ := s.Revisions("hello"); len(revs) != 0 {
		t.Fatalf("%d revisions left after DeleteService", len(revs))
	}
}

func TestLoadKey(t *testing.T) {
	data := t.TempDir()
	storeDir := filepath.Join(data, "store")
	k1, err := LoadKey(KeySource{}, data, storeDir)
	if err != nil || len(k1) != 32 {
		t.Fatalf("new key: %d bytes, %v", len(k1), err)
	}
	if fi, _ := os.Stat(filepath.Join(data, DefaultKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode())
	}
	k2, err := LoadKey(KeySource{}, data, storeDir)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatal("the key file is not read back")
	}
	s := openT(t, storeDir, k1)
	s.Close()
	os.Remove(filepath.Join(data, DefaultKeyFile))
	if _, err := LoadKey(KeySource{}, data, storeDir); err == nil || !strings.Contains(err.Error(), "key file") {
		t.Fatalf("a store without its key file got a new key: %v", err)
	}

	t.Setenv("PODCELL_TEST_KEY", hex.EncodeToString(k1))
	k3, err := LoadKey(KeySource{Env: "PODCELL_TEST_KEY"}, data, storeDir)
	if err != nil || !bytes.Equal(k1, k3) {
		t.Fatalf("env key: %v", err)
	}
	for _, bad := range []KeySource{{Env: "PODCELL_TEST_UNSET"}, {File: filepath.Join(data, "nope")}, {File: "a", Env: "b"}} {
		if _, err := LoadKey(bad, data, storeDir); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	t.Setenv("PODCELL_TEST_KEY", "abcd")
	if _, err := LoadKey(KeySource{Env: "PODCELL_TEST_KEY"}, data, storeDir); err == nil || !strings.Contains(err.Error(), "2 bytes") {
		t.Fatalf("short key: %v", err)
	}
}

func TestBuildsAreKeptBounded(t *testing.T) {
	dir, key := t.TempDir(), testKey(t)
	s := openT(t, dir, key)
	type build struct {
		ID    int      `json:"id"`
		Lines []string `json:"lines"`
	}
	for id := 1; id <= 25; id++ {
		if err := s.PutBuild("app", id, build{ID: id, Lines: []string{fmt.Sprint("line of ", id)}}, 20); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openT(t, dir, key)
	defer s.Close()
	got, err := Builds[build](s, "app")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 || got[0].ID != 6 || got[19].ID != 25 || got[19].Lines[0] != "line of 25" {
		t.Fatalf("kept %d builds, ids %d..%d", len(got), got[0].ID, got[len(got)-1].ID)
	}
	if err := s.DeleteService("app"); err != nil {
		t.Fatal(err)
	}
	if got, _ := Builds[build](s, "app"); len(got) != 0 {
		t.Fatalf("%d builds left after DeleteService", len(got))
	}
}

// A crash while the key file was written used to leave it empty, and every
// start after failed. Beside no store such a file is replaced; beside a
// store that holds data it stays a clear error and the data stays.
func TestBrokenKeyFile(t *testing.T) {
	data := t.TempDir()
	storeDir := filepath.Join(data, "store")
	path := filepath.Join(data, DefaultKeyFile)
	for _, broken := range []string{"", "3f2a", "\n"} {
		if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
			t.Fatal(err)
		}
		key, err := LoadKey(KeySource{}, data, storeDir)
		if err != nil || len(key) != 32 {
			t.Fatalf("key file %q beside no store: %d bytes, %v", broken, len(key), err)
		}
		again, err := LoadKey(KeySource{}, data, storeDir)
		if err != nil || !bytes.Equal(key, again) {
			t.Fatalf("key file %q: the replacement is not read back: %v", broken, err)
		}
		os.Remove(path)
	}

	key, err := LoadKey(KeySource{}, data, storeDir)
	if err != nil {
		t.Fatal(err)
	}
	s := openT(t, storeDir, key)
	if _, err := s.UpdateService("hello", func(svc *Service) error {
		svc.Env = map[string]string{"A": "kept"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	good, _ := os.ReadFile(path)
	if err := os.WriteFile(path, good[:10], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(KeySource{}, data, storeDir); err == nil || !strings.Contains(err.Error(), "restore the file") {
		t.Fatalf("a partial key file beside a store with data: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != string(good[:10]) {
		t.Fatal("the partial key file was replaced although the store holds data")
	}
	os.WriteFile(path, good, 0o600)
	s = openT(t, storeDir, key)
	defer s.Close()
	if svc, err := s.Service("hello"); err != nil || svc.Env["A"] != "kept" {
		t.Fatalf("data after restoring the key: %+v, %v", svc, err)
	}
	left, _ := filepath.Glob(filepath.Join(data, DefaultKeyFile+".tmp-*"))
	if len(left) != 0 {
		t.Fatalf("temporary key files left: %v", left)
	}
}

// Each versioned kind of record is written with its format, and a store
// whose records are all of this code's formats (or older) passes
// CheckFormats; one newer record of any kind does not.
func TestRecordsCarryTheirFormat(t *testing.T) {
	s := openT(t, t.TempDir(), testKey(t))
	defer s.Close()
	if err := setEnv(s, "svc", map[string]string{"A": "1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddRevision("svc", Revision{ID: "r1", Image: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBuild("svc", 1, map[string]any{"id": 1}, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCronJob("svc", "tick", struct{}{}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{"service/svc": ServiceFormat, "revision/svc/0000000001": RevisionFormat,
		"build/svc/0000000001": BuildFormat, "cron/svc/tick": CronJobFormat} {
		var rec map[string]any
		if err := s.Get(key, &rec); err != nil || rec["v"] != float64(want) {
			t.Errorf("%s: %v, %v; want v %d", key, rec, err, want)
		}
	}
	if err := s.CheckFormats(); err != nil {
		t.Fatal(err)
	}
	// Format 1 without "v", as written before formats.
	s.Put("build/old/0000000001", map[string]any{"id": 1})
	if err := s.CheckFormats(); err != nil {
		t.Fatalf("a record without v: %v", err)
	}
	if err := s.PutBuild("svc", 2, []int{1}, 5); err == nil {
		t.Error("a build record that is not a JSON object was stored")
	}
	s.Put("cron/svc/next", map[string]any{"v": CronJobFormat + 1})
	if err := s.CheckFormats(); err == nil || !strings.Contains(err.Error(), "cron job record svc/next has format 2, newer") {
		t.Errorf("a newer cron job record: %v", err)
	}
}
