package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/podcell/podcell/caddymodule/controller"
)

// bandwidth_per_core and bandwidth reach the JSON; bad rates are refused
// at parse time with the option's name and an example.
func TestBandwidthCaddyfile(t *testing.T) {
	v, err := parseGlobal(caddyfile.NewTestDispenser(`podcell {
		bandwidth_per_core 1Gbit
	}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if raw := string(v.(httpcaddyfile.App).Value); !strings.Contains(raw, `"bandwidth_per_core_mbit":1000`) {
		t.Errorf("app JSON %s lacks bandwidth_per_core_mbit 1000", raw)
	}
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`podcell web {
		image localhost/x:1
		bandwidth 50Mbit/s
	}`)); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(h)
	if !strings.Contains(string(b), `"bandwidth_mbit":50`) {
		t.Errorf("handler JSON %s lacks bandwidth_mbit 50", b)
	}

	for _, c := range []struct{ in, want string }{
		{"podcell {\n bandwidth_per_core 0\n}", "bandwidth_per_core"},
		{"podcell {\n bandwidth_per_core 200MB\n}", "Mbit"},
		{"podcell {\n bandwidth_per_core\n}", "bandwidth_per_core 200Mbit"},
	} {
		if _, err := parseGlobal(caddyfile.NewTestDispenser(c.in), nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want one naming %q", c.in, err, c.want)
		}
	}
	var bad Handler
	if err := bad.UnmarshalCaddyfile(caddyfile.NewTestDispenser("podcell web {\n image x\n bandwidth 200000Mbit\n}")); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("bandwidth 200000Mbit: err %v, want out of range", err)
	}
	// The JSON form is checked at provision time as the Caddyfile is.
	if err := (controller.ServiceSpec{Image: "x", BandwidthMbit: -1}).Validate("web"); err == nil || !strings.Contains(err.Error(), "bandwidth") {
		t.Errorf("bandwidth_mbit -1: err %v, want one naming bandwidth", err)
	}
}
