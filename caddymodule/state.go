package caddymodule

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler"
)

// The store adds to the config what the admin API changed: services the
// Caddyfile does not declare, env vars, revisions. The rule is simple: the
// Caddyfile (or JSON config) is the source for what it declares. The API
// cannot change a setting the config sets (it answers 409 and names the
// config), and a service the config declares shadows a stored API service
// of the same name.

// stores keeps one open store per directory across reloads: Badger locks
// its directory and the new config opens before the old one closes.
var stores = caddy.NewUsagePool()

type pooledStore struct{ st *store.Store }

func (p pooledStore) Destruct() error { return p.st.Close() }

// current is the podcell app of the config running now; the admin API
// changes services through it.
var current atomic.Pointer[App]

// applyMu orders every change to what runs: an app's Start and the admin
// API's mutations. It is never taken on the request path.
var applyMu sync.Mutex

// lockChanges holds off every other change to what runs, and this app's
// config, until the returned func is called.
func (a *App) lockChanges() (unlock func()) {
	applyMu.Lock()
	a.mu.Lock()
	return func() {
		a.mu.Unlock()
		applyMu.Unlock()
	}
}

func (a *App) openStore() error {
	dir := filepath.Join(a.DataDir, "store")
	a.stKey = dir
	val, _, err := stores.LoadOrNew(dir, func() (caddy.Destructor, error) {
		key, err := store.LoadKey(store.KeySource{File: a.EncryptionKeyFile, Env: a.EncryptionKeyEnv}, a.DataDir, dir)
		if err != nil {
			return nil, err
		}
		st, err := store.Open(dir, key, caddy.Log().Named("podcell.store"))
		if err != nil {
			return nil, err
		}
		return pooledStore{st}, nil
	})
	if err != nil {
		return err
	}
	a.st = val.(pooledStore).st
	return nil
}

// storedEnv is the env the admin API set for a service.
func (a *App) storedEnv(name string) (map[string]string, error) {
	rec, err := a.st.Service(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return rec.Env, err
}

// effective is the config a service runs: as declared, plus the store's
// env vars, the declared ones winning.
func effective(cfg scaler.ServiceConfig, stored map[string]string) scaler.ServiceConfig {
	if len(stored) == 0 {
		return cfg
	}
	env := make(map[string]string, len(stored)+len(cfg.Env))
	maps.Copy(env, stored)
	maps.Copy(env, cfg.Env)
	cfg.Env = env
	return cfg
}

// applyRef makes the scaler run ref's effective config, with the
// service's cron secret (a git service's deployer builds first when its
// source changed). reason goes into the revision history.
func (a *App) applyRef(ref *serviceRef, reason string) error {
	env, err := a.storedEnv(ref.cfg.Name)
	if err != nil {
		return err
	}
	// Every service gets its secret, with jobs or not: a job added through
	// the API later then needs no new revision.
	secret, err := a.st.CronSecret(ref.cfg.Name)
	if err != nil {
		return err
	}
	cfg := withCronSecret(effective(ref.cfg, env), secret)
	if ref.src != nil {
		return a.startDeployer(ref, cfg, reason)
	}
	svc, err := a.sc.Apply(cfg)
	if err != nil {
		return err
	}
	ref.set(svc)
	a.recordRevision(cfg, reason, 0)
	return nil
}

// recordRevision notes in the store that cfg runs now, if that is new.
func (a *App) recordRevision(cfg scaler.ServiceConfig, reason string, build int) {
	env, err := a.storedEnv(cfg.Name)
	if err == nil {
		_, _, err = a.st.AddRevision(cfg.Name, store.Revision{ID: cfg.Revision(), Image: cfg.Image, Env: env, Reason: reason, Build: build})
	}
	if err != nil {
		a.log.Error("cannot record the revision", zap.String("service", cfg.Name), zap.Error(err))
	}
}

// loadAPIServices declares and applies the services stored by the admin
// API, except those the config declares itself.
func (a *App) loadAPIServices() error {
	recs, err := a.st.Services()
	if err != nil {
		return fmt.Errorf("reading services from the store: %w", err)
	}
	for _, rec := range recs {
		if len(rec.Spec) == 0 {
			continue // env only, for a service the config declares
		}
		if a.services[rec.Name] != nil {
			a.log.Warn("the config declares a service the admin API also stored; the config wins", zap.String("service", rec.Name))
			continue
		}
		spec, err := decodeSpec(rec.Spec)
		if err != nil {
			a.log.Error("cannot read a stored service; it is not served", zap.String("service", rec.Name), zap.Error(err))
			continue
		}
		if err := a.addAPIServiceLocked(rec.Name, spec, "config"); err != nil {
			a.log.Error("cannot run a stored service", zap.String("service", rec.Name), zap.Error(err))
		}
	}
	return nil
}

// addAPIServiceLocked declares and applies a service the admin API stored.
func (a *App) addAPIServiceLocked(name string, spec ServiceSpec, reason string) error {
	if spec.Git != nil {
		// Literally: the API's values are never placeholders (placeholders.go).
		spec.Git.secret = spec.Git.WebhookSecret
	}
	ref, err := a.declareLocked(spec.config(name), spec.Git, spec.Cron, &spec)
	if err != nil {
		return err
	}
	return a.applyRef(ref, reason)
}

// publishRoutesLocked makes the declared services reachable in host mode.
func (a *App) publishRoutesLocked() {
	m := make(map[string]*serviceRef, len(a.services))
	maps.Copy(m, a.services)
	a.routes.Store(&m)
}

// route finds a service for host mode; nil if there is none.
func (a *App) route(name string) *serviceRef {
	if m := a.routes.Load(); m != nil {
		return (*m)[name]
	}
	return nil
}
