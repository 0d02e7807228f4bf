package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/caddymodule/controller"
)

// The build limits in the global options become the app's JSON, and a
// service's become its git source's, which reaches the build's Spec.
func TestBuildLimitsCaddyfile(t *testing.T) {
	v, err := parseGlobal(caddyfile.NewTestDispenser(`podcell {
		build_concurrency 2
		build_memory 1GiB
		build_cpus 0.5
		build_pids 512
		build_timeout 10m
		max_repo_size 256MB
		max_repo_files 5000
	}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var app App
	if err := json.Unmarshal(v.(httpcaddyfile.App).Value, &app); err != nil {
		t.Fatal(err)
	}
	if app.BuildConcurrency != 2 || app.BuildMemoryMB != 1024 || app.BuildCPUs != 0.5 || app.BuildPids != 512 || app.BuildTimeout != controller.Duration(10*time.Minute) ||
		app.MaxRepoMB != 256 || app.MaxRepoFiles != 5000 {
		t.Errorf("app: %+v", app)
	}
	raw := string(v.(httpcaddyfile.App).Value)
	for _, k := range []string{`"build_memory_mb":1024`, `"build_cpus":0.5`, `"build_pids":512`, `"build_timeout":600000000000`} {
		if !strings.Contains(raw, k) {
			t.Errorf("app JSON %s lacks %s", raw, k)
		}
	}

	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`podcell web {
		git https://github.com/you/app main
		runtime python3.11-debian
		build_memory 512MB
		build_pids 256
		build_timeout 90s
	}`)); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Handler
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got := back.Git.BuildSpec(8080).Limits
	if want := (builder.Limits{MemoryMB: 512, Pids: 256, Timeout: 90 * time.Second}); got != want {
		t.Errorf("round trip through %s: limits %+v, want %+v", b, got, want)
	}
}

// Bad build limits are refused where they are written, naming the option
// and the fix.
func TestBuildLimitsCaddyfileErrors(t *testing.T) {
	global := map[string]string{
		`podcell {
			build_memory lots
		}`: `build_memory "lots": want a size such as 256MB`,
		`podcell {
			build_cpus -1
		}`: `build_cpus "-1": want a positive number of cores`,
		`podcell {
			build_pids
		}`: `build_pids takes one argument, e.g. build_pids 1024`,
		`podcell {
			build_timeout forever
		}`: `build_timeout "forever": want a positive duration such as 15m`,
		`podcell {
			max_repo_size huge
		}`: `max_repo_size "huge": want a size such as 256MB`,
		`podcell {
			max_repo_files 0
		}`: `max_repo_files "0": want a whole number >= 1`,
	}
	for in, want := range global {
		if _, err := parseGlobal(caddyfile.NewTestDispenser(in), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n%v, want an error saying %q", in, err, want)
		}
	}
	handler := map[string]string{
		`podcell web {
			git https://github.com/you/app
			runtime python3.11-debian
			build_memory 16MB
		}`: `build_memory "16MB" is too small: give at least 64MB, e.g. build_memory 2GiB`,
		`podcell web {
			git https://github.com/you/app
			runtime python3.11-debian
			build_pids 4
		}`: `build_pids "4" is too small: give at least 16 processes`,
		`podcell web {
			git https://github.com/you/app
			runtime python3.11-debian
			build_timeout 1s
		}`: `build_timeout "1s" is too short: give at least 10s`,
		`podcell web {
			image localhost/hello:latest
			build_pids 100
		}`: `the build_* limits need a git repository`,
	}
	for in, want := range handler {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n%v, want an error saying %q", in, err, want)
		}
	}
	// The app's limits are checked when the builder is made (provision).
	if _, err := builder.New(nil, builder.Options{Limits: builder.Limits{MemoryMB: 10}}); err == nil || !strings.Contains(err.Error(), "build_memory") {
		t.Errorf("builder.New with build_memory 10MB: %v", err)
	}
}
