package controller

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// A controller made and closed without a Start, as `caddy validate`
// provisions and cleans up a config, never opens the store: another
// process (here: the test) holds it meanwhile. Its first Start opens it,
// and fails, naming the store, while the other holds it; a later Start
// succeeds once it is free.
func TestStoreOpensAtStart(t *testing.T) {
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
	rt := scalertest.NewFake(t)
	rt.SetAutoReady(true)
	newController := func() *Controller {
		c, err := New(Options{DataDir: dir, Key: key, Runtime: rt, Scaler: scaler.Options{Owner: "ctltest"}})
		if err != nil {
			t.Fatalf("a controller of a data dir whose store another process holds: %v", err)
		}
		return c
	}
	web := image("web", "localhost/web:1", nil)

	// Provision and cleanup: a gateway for a handler, no store.
	validated := newController()
	validated.Gateway("web")
	if err := validated.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	c := newController()
	t.Cleanup(func() { c.Close(context.Background()) })
	err = c.Start(Settings{}, []Declared{web})
	if err == nil || !strings.Contains(err.Error(), storeDir) || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("start while another holds the store: %v, want an error naming %s and why", err, storeDir)
	}
	if c.Scaler() != nil || len(c.Services()) != 0 || running(rt) != 0 {
		t.Fatal("a start that could not open the store runs services")
	}

	// The holder lets go: the next Start opens the store and holds it.
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(Settings{}, []Declared{web}); err != nil {
		t.Fatal(err)
	}
	if c.Scaler().Service("web") == nil {
		t.Fatal("web does not run after the second start")
	}
	if again, err := store.Open(storeDir, key, nil); err == nil {
		again.Close()
		t.Fatal("the store of a started controller opens a second time: the check above proves nothing")
	}
}
