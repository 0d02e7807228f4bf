package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// standby and standby_idle reach the app's JSON; bad values are refused
// at parse time, naming the option and what it takes.
func TestStandbyCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in      string
		standby string
		idle    time.Duration
		wantErr string
	}{
		{in: "standby created\nstandby_idle 5m", standby: "created", idle: 5 * time.Minute},
		{in: "standby initialized\nstandby_idle always", standby: "initialized", idle: -1},
		{in: "standby warm", wantErr: "standby takes one argument, initialized"},
		{in: "standby", wantErr: "standby takes one argument"},
		{in: "standby_idle 0s", wantErr: "standby_idle \"0s\": want a positive duration"},
		{in: "standby_idle soon", wantErr: "standby_idle \"soon\""},
	} {
		v, err := parseGlobal(caddyfile.NewTestDispenser("podcell {\n"+tc.in+"\n}"), nil)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		var app App
		if err := json.Unmarshal(v.(httpcaddyfile.App).Value, &app); err != nil {
			t.Fatal(err)
		}
		if app.Standby != tc.standby || time.Duration(app.StandbyIdle) != tc.idle {
			t.Errorf("%q: standby %q, standby_idle %s", tc.in, app.Standby, time.Duration(app.StandbyIdle))
		}
	}
}
