package main

import (
	"os"
	"strings"
	"testing"
)

func TestRepoManifest(t *testing.T) {
	data, err := os.ReadFile("../../xcaddy.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	gm, err := readGoMod()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckCaddyVersion(m, gm); err != nil {
		t.Fatal(err)
	}
}

func TestParseManifestErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"caddy": "2.11.9", "plugins": [{"module": "github.com/a/b", "replace": "."}]}`, "release version"},
		{`{"caddy": "v2.11.9", "plugins": []}`, "plugins"},
		{`{"caddy": "v2.11.9", "plugins": [{"module": "github.com/a/b", "version": "v1.0.0", "replace": "."}]}`, "one of them"},
		{`{"caddy": "v2.11.9", "plugins": [{"module": "github.com/a/b"}]}`, "one of them"},
		{`{"caddy": "v2.11.9", "plugins": [{"module": "github.com/a/b", "replace": "."}], "build_tag": ["x"]}`, "unknown field"},
		{`{"caddy": "v2.11.9", "plugins": [{"module": "github.com/a/b", "replace": "."}], "build_tags": ["a b"]}`, "build tag"},
	} {
		_, err := ParseManifest([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseManifest(%s) = %v, want an error containing %q", tc.json, err, tc.want)
		}
	}
}

func TestWith(t *testing.T) {
	for p, want := range map[Plugin]string{
		{Module: "github.com/a/b", Replace: "."}:      "github.com/a/b@v0.0.0-00010101000000-000000000000=.",
		{Module: "github.com/a/b", Version: "v1.2.3"}: "github.com/a/b@v1.2.3",
	} {
		if got := p.With(); got != want {
			t.Errorf("%+v.With() = %q, want %q", p, got, want)
		}
	}
}

func TestCheckCaddyVersion(t *testing.T) {
	var gm goMod
	gm.Require = append(gm.Require, struct{ Path, Version string }{caddyModule, "v2.11.8"})
	err := CheckCaddyVersion(Manifest{Caddy: "v2.11.9"}, gm)
	if err == nil || !strings.Contains(err.Error(), "go.mod requires") {
		t.Fatalf("mismatch not reported: %v", err)
	}
	if err := CheckCaddyVersion(Manifest{Caddy: "v2.11.8"}, gm); err != nil {
		t.Fatal(err)
	}
}
