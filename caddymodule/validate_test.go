package caddymodule

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler/scalertest"
)

// caddy.Validate, what `caddy validate` runs, provisions a config and
// cleans it up without starting it. It succeeds while another holder
// (here the test, as a running server would) keeps the data dir's store
// open, and leaves nothing of its own open: the holder writes on, and
// once it lets go the store opens again at once.
func TestValidateLeavesTheStoreAlone(t *testing.T) {
	scalertest.Podman(t) // provisioning connects to Podman (and skips without it)
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	key, err := store.LoadKey(store.KeySource{}, dir, storeDir)
	if err != nil {
		t.Fatal(err)
	}
	held, err := store.Open(storeDir, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if held != nil {
			held.Close()
		}
	}()
	raw := fmt.Sprintf(`{"admin": {"disabled": true}, "apps": {
		"podcell": {"data_dir": %q, "podman": %q, "owner": "podcellvalidate"},
		"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [
			{"handler": "podcell", "service": "web", "image": "localhost/web:1"}]}]}}}}}`, dir, scalertest.URI())
	var cfg caddy.Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("validate while the store is held elsewhere: %v", err)
	}
	if _, err := held.CronSecret("web"); err != nil {
		t.Fatalf("the holder's store after validate: %v", err)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	held = nil
	again, err := store.Open(storeDir, key, nil)
	if err != nil {
		t.Fatalf("the store after validate: %v", err)
	}
	again.Close()
}
