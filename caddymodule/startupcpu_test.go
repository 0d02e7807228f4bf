package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// startup_cpu and startup_cpu_budget reach the app's JSON and a service's
// spec; bad values are refused at parse time, naming the option.
func TestStartupCPUCaddyfile(t *testing.T) {
	v, err := parseGlobal(caddyfile.NewTestDispenser(`podcell {
		startup_cpu 1.5
		startup_cpu_budget 3
	}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var app App
	if err := json.Unmarshal(v.(httpcaddyfile.App).Value, &app); err != nil {
		t.Fatal(err)
	}
	if app.StartupCPU != 1.5 || app.StartupCPUBudget != 3 {
		t.Errorf("app: startup_cpu %g, budget %g", app.StartupCPU, app.StartupCPUBudget)
	}
	for _, tc := range []struct{ in, want string }{
		{"off", ""}, {"0.5", ""}, {"0", "startup_cpu"}, {"5", "at most 4"}, {"fast", "startup_cpu"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("podcell web {\nimage localhost/x\nstartup_cpu " + tc.in + "\n}"))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("startup_cpu %s: %v", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("startup_cpu %s: err = %v, want %q", tc.in, err, tc.want)
		case tc.in == "off" && h.StartupCPU != -1:
			t.Errorf("startup_cpu off: %g, want -1", h.StartupCPU)
		}
	}
	if _, err := parseGlobal(caddyfile.NewTestDispenser("podcell {\nstartup_cpu_budget -1\n}"), nil); err == nil || !strings.Contains(err.Error(), "startup_cpu_budget") {
		t.Errorf("negative budget: %v", err)
	}
}
