package caddymodule

import (
	"encoding/json"
	"github.com/podcell/podcell/caddymodule/controller"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestExpandPlaceholders(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, maxPlaceholderFile+1), 0o600)
	nul := filepath.Join(dir, "nul")
	os.WriteFile(nul, []byte("a\x00b"), 0o600)
	t.Setenv("PODCELL_TEST_SET", "from-env")
	t.Setenv("PODCELL_TEST_EMPTY", "")
	os.Unsetenv("PODCELL_TEST_UNSET")

	for _, c := range []struct{ in, want, err string }{
		{"{env.PODCELL_TEST_SET}", "from-env", ""},
		{"a={env.PODCELL_TEST_SET};b={file." + file + "}", "a=from-env;b=from-file", ""},
		{"{env.PODCELL_TEST_EMPTY}", "", ""}, // set, if empty
		{"{env.PODCELL_TEST_UNSET}", "", "env var PODCELL_TEST_UNSET is not set"},
		{"{file." + dir + "/missing}", "", "missing}: the file does not exist"},
		{"{file." + big + "}", "", "larger than"},
		{"{file." + nul + "}", "", "NUL byte"},
		// Anything else is kept as written.
		{`{"a":1}`, `{"a":1}`, ""},
		{"{system.hostname} {env.PODCELL_TEST_SET}", "{system.hostname} from-env", ""},
		{`\{env.PODCELL_TEST_SET}`, "{env.PODCELL_TEST_SET}", ""},
		{`plain \{x\}`, `plain \{x\}`, ""}, // no placeholder: not parsed at all
	} {
		got, err := expandPlaceholders(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %q, %v; want an error saying %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// A config's service: env placeholders are checked at load and named for
// the scaler; the webhook secret is resolved; a missing source is an error
// that names the setting.
func TestResolveConfigSecrets(t *testing.T) {
	t.Setenv("PODCELL_TEST_HOOK", "hook-key")
	file := filepath.Join(t.TempDir(), "db")
	os.WriteFile(file, []byte("pw"), 0o600)
	spec := controller.ServiceSpec{Env: map[string]string{"DB": "{file." + file + "}", "PLAIN": "x", "JSON": `{"a":1}`},
		Git: &controller.GitSource{URL: "https://example.com/a.git", Runtime: "python3.11-debian", WebhookPath: "/_hook", WebhookSecret: "{env.PODCELL_TEST_HOOK}"}}
	d, err := declaration("app", spec)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.ExpandEnv, []string{"DB"}) || d.Spec.Env["DB"] != "{file."+file+"}" {
		t.Errorf("ExpandEnv %v, env %v: want DB named and kept as its placeholder", d.ExpandEnv, d.Spec.Env)
	}
	if d.WebhookKey != "hook-key" || d.Spec.Git.WebhookSecret != "{env.PODCELL_TEST_HOOK}" {
		t.Errorf("webhook secret %q (config %q): want it resolved, the config's field untouched", d.WebhookKey, d.Spec.Git.WebhookSecret)
	}
	// The JSON that /config/ serves and autosave.json keeps.
	b, _ := json.Marshal(spec)
	if strings.Contains(string(b), "hook-key") || strings.Contains(string(b), `"pw"`) {
		t.Errorf("the config's JSON holds a secret: %s", b)
	}

	os.Remove(file)
	if _, err := declaration("app", spec); err == nil || !strings.Contains(err.Error(), "env DB: {file."+file+"}: the file does not exist") {
		t.Errorf("missing file: %v", err)
	}
	spec.Env = nil
	for _, secret := range []string{"{env.PODCELL_TEST_UNSET_HOOK}", "{env.PODCELL_TEST_EMPTY}"} {
		t.Setenv("PODCELL_TEST_EMPTY", "")
		spec.Git.WebhookSecret = secret
		if _, err := declaration("app", spec); err == nil || !strings.Contains(err.Error(), "webhook secret") {
			t.Errorf("webhook secret %s: %v, want an error", secret, err)
		}
	}
}

// The API's services are never expanded: their config names no env to
// resolve and their webhook secret is taken as written.
func TestAPIValuesStayLiteral(t *testing.T) {
	spec := controller.ServiceSpec{Env: map[string]string{"X": "{file./etc/hostname}"}}
	if cfg := spec.Config("app"); len(cfg.ExpandEnv) != 0 {
		t.Errorf("an API spec's config names %v for expansion", cfg.ExpandEnv)
	}
	if _, err := controller.DecodeSpec([]byte(`{"image":"x","expand_env":["X"]}`)); err == nil {
		t.Errorf("an API body could name env to expand")
	}
}

// Placeholders survive the Caddyfile as written: the adapter does not
// resolve {env.*} (only {$VAR}, which would put the value in the config).
func TestCaddyfileKeepsPlaceholders(t *testing.T) {
	d := caddyfile.NewTestDispenser(`podcell app {
		git https://example.com/a.git main
		runtime python3.11-debian
		webhook /_hook {env.HOOK_SECRET}
		env TOKEN {file./run/secrets/token}
		env MIXED "user:{env.DB_PASSWORD}@db"
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.Git.WebhookSecret != "{env.HOOK_SECRET}" || h.Env["TOKEN"] != "{file./run/secrets/token}" || h.Env["MIXED"] != "user:{env.DB_PASSWORD}@db" {
		t.Errorf("parsed: webhook secret %q, env %v", h.Git.WebhookSecret, h.Env)
	}
}
