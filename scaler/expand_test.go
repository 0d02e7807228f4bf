package scaler_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// The env values a service's ExpandEnv names are resolved at each
// container create, with the resolver of the moment; every other value,
// and the config itself, keeps the template.
func TestExpandEnvAtCreate(t *testing.T) {
	var mu sync.Mutex
	secret, calls := "one", 0
	f := scalertest.NewFake(t)
	f.SetAutoReady(true)
	sc, err := scaler.New(context.Background(), f, scaler.Options{Expand: func(v string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if secret == "" {
			return "", errors.New("{file./run/secret}: the file does not exist")
		}
		return strings.ReplaceAll(v, "{file./run/secret}", secret), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(context.Background())
	cfg := svcConfig(func(c *scaler.ServiceConfig) {
		c.Env = map[string]string{"TOKEN": "t={file./run/secret}", "LITERAL": "{file./run/secret}"}
		c.ExpandEnv = []string{"TOKEN"}
	})
	rev := cfg.WithDefaults().Revision()

	cs, err := sc.ContainerSpec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Env["TOKEN"] != "t=one" || cs.Env["LITERAL"] != "{file./run/secret}" {
		t.Fatalf("env %v: want TOKEN resolved and LITERAL (not named in ExpandEnv) as written", cs.Env)
	}
	mu.Lock()
	secret = "two" // the file was rotated
	mu.Unlock()
	if cs, _ = sc.ContainerSpec(cfg); cs.Env["TOKEN"] != "t=two" {
		t.Errorf("after a rotation TOKEN = %q, want the new value at the next create", cs.Env["TOKEN"])
	}
	if cfg.Env["TOKEN"] != "t={file./run/secret}" || cfg.WithDefaults().Revision() != rev {
		t.Errorf("the config changed: %v", cfg.Env)
	}

	// A real start, through Acquire, gets the resolved value.
	svc := apply(t, sc, cfg)
	lease, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()
	spec, _ := f.Spec(f.StartedIDs()[0])
	if got := spec.Env["TOKEN"]; got != "t=two" {
		t.Errorf("started container's TOKEN = %q, want t=two", got)
	}

	// A source that vanished fails the start and names the variable.
	mu.Lock()
	secret = ""
	mu.Unlock()
	svc2 := apply(t, sc, svcConfig(func(c *scaler.ServiceConfig) {
		c.Name = "other"
		c.Env = map[string]string{"TOKEN": "{file./run/secret}"}
		c.ExpandEnv = []string{"TOKEN"}
	}))
	_, err = svc2.Acquire(context.Background())
	var se *scaler.StartError
	if !errors.As(err, &se) || !strings.Contains(se.Reason, "env could not be resolved") || !strings.Contains(se.Error(), "env TOKEN: {file./run/secret}") {
		t.Fatalf("start with a missing source: %v, want a StartError naming env TOKEN and its placeholder", err)
	}
}

// Resolved or literal makes a different container: the revision says so,
// and ExpandEnv must name a variable env sets.
func TestExpandEnvRevisionAndValidate(t *testing.T) {
	plain := svcConfig(func(c *scaler.ServiceConfig) { c.Env = map[string]string{"A": "{env.X}"} }).WithDefaults()
	expanded := plain
	expanded.ExpandEnv = []string{"A"}
	if plain.Revision() == expanded.Revision() {
		t.Errorf("the same revision %s with and without expansion", plain.Revision())
	}
	bad := plain
	bad.ExpandEnv = []string{"B"}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `"B"`) {
		t.Errorf("ExpandEnv naming an unset var: %v", err)
	}
	sc, _ := newTestScaler(t) // no Expand func
	if _, err := sc.ContainerSpec(expanded); err == nil || !strings.Contains(err.Error(), "env A") {
		t.Errorf("ExpandEnv without a resolver: %v, want an error", err)
	}
}
