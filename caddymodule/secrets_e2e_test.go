package caddymodule_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigSecretsStayOutOfConfig: env values written in the Caddyfile as
// {file.*} and {env.*} placeholders reach the app, while GET /config/,
// autosave.json and the admin API hold only the placeholders. A rotated
// file reaches the next instances; a missing one fails the config at load
// and, once running, the start (as an event naming the variable). Values
// set through the admin API are never expanded: {file./etc/hostname} from
// the API reaches the app as those very characters.
func TestConfigSecretsStayOutOfConfig(t *testing.T) {
	e2e(t)
	stamp := time.Now().UnixNano()
	fileSecret := fmt.Sprintf("file-secret-%d", stamp)
	envSecret := fmt.Sprintf("env-secret-%d", stamp)
	secretFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secretFile, []byte(fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PODCELL_E2E_SECRET", envSecret) // Caddy inherits it
	c := startCaddy(t, strings.ReplaceAll(`
http://:{httpport} {
	podcell {
		hosts *.apps.localhost
	}
}
http://{http} {
	podcell sec {
		image {image}
		env FROM_FILE {file.SECRETFILE}
		env FROM_ENV "db://app:{env.PODCELL_E2E_SECRET}@db"
		pause_after off
	}
}`, "SECRETFILE", secretFile))
	get := c.getHost
	if r := get("", "/env?name=FROM_FILE"); r.code != 200 || r.body != fileSecret {
		t.Fatalf("FROM_FILE in the app: %d %q, want the file's content", r.code, r.body)
	}
	if r := get("", "/env?name=FROM_ENV"); r.code != 200 || r.body != "db://app:"+envSecret+"@db" {
		t.Fatalf("FROM_ENV in the app: %d %q", r.code, r.body)
	}

	// Nothing Caddy or podcell shows or keeps holds either secret.
	noSecret := func(what, s string) {
		t.Helper()
		if strings.Contains(s, fileSecret) || strings.Contains(s, envSecret) {
			t.Errorf("%s holds a secret: %s", what, s)
		}
	}
	code, cfg := c.adminDo("GET", "/config/", "")
	if code != 200 || !strings.Contains(cfg, `{file.`+secretFile+`}`) || !strings.Contains(cfg, "{env.PODCELL_E2E_SECRET}") {
		t.Errorf("GET /config/: %d, want the placeholders in %s", code, cfg)
	}
	noSecret("GET /config/", cfg)
	autosave, err := os.ReadFile(filepath.Join(c.dir, "caddy", "autosave.json"))
	if err != nil || !strings.Contains(string(autosave), "{env.PODCELL_E2E_SECRET}") {
		t.Errorf("autosave.json: %v, want the config with its placeholders", err)
	}
	noSecret("autosave.json", string(autosave))
	_, revealed := c.adminDo("GET", "/podcell/services/sec/env?reveal=true", "")
	noSecret("the env API with reveal", revealed)
	if env := c.env("sec", true); env["FROM_FILE"] != "config:{file."+secretFile+"}" {
		t.Errorf("env API, revealed: %v; want the config's placeholder", env)
	}
	if env := c.env("sec", false); env["FROM_FILE"] != "config:" {
		t.Errorf("env API without reveal shows %q", env["FROM_FILE"])
	}
	for _, path := range []string{"/podcell/services/sec", "/podcell/services/sec/revisions", "/podcell/services"} {
		_, body := c.adminDo("GET", path, "")
		noSecret(path, body)
	}

	// The file is rotated: the containers created from now on read it.
	os.WriteFile(secretFile, []byte("rotated-"+fileSecret), 0o600)
	// An API-set value is stored and passed literally: a placeholder in it
	// reads nothing from the host.
	if code, body := c.adminDo("PUT", "/podcell/services/sec/env", `{"FROM_API": "{file./etc/hostname}"}`); code != 200 {
		t.Fatalf("PUT env: %d %s", code, body)
	}
	eventually(t, time.Minute, "the env change did not reach the app", func() bool {
		return get("", "/env?name=FROM_API").body == "{file./etc/hostname}"
	})
	if r := get("", "/env?name=FROM_FILE"); r.body != "rotated-"+fileSecret {
		t.Errorf("after a rotation, a new instance's FROM_FILE: %q, want the file's new content", r.body)
	}
	code, body := c.adminDo("PUT", "/podcell/services/apisec", `{"image": "`+c.image+`", "pause_after": -1,
		"env": {"LEAK_FILE": "{file./etc/hostname}", "LEAK_ENV": "{env.PODCELL_E2E_SECRET}"}}`)
	if code != 201 {
		t.Fatalf("declare apisec: %d %s", code, body)
	}
	for name, want := range map[string]string{"LEAK_FILE": "{file./etc/hostname}", "LEAK_ENV": "{env.PODCELL_E2E_SECRET}"} {
		if r := get("apisec.apps.localhost", "/env?name="+name); r.code != 200 || r.body != want {
			t.Errorf("API service's %s: %d %q, want %q literally", name, r.code, r.body, want)
		}
	}

	// A config whose file is missing does not load, and says which.
	missing := secretFile + ".missing"
	req, _ := http.NewRequest("POST", "http://"+c.admin+"/load", strings.NewReader(c.caddyfile(globals+`
http://{http} {
	podcell sec {
		image {image}
		env FROM_FILE {file.`+missing+`}
		pause_after off
	}
}`)))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 || !strings.Contains(string(msg), "env FROM_FILE: {file."+missing+"}: the file does not exist") {
		t.Errorf("load with a missing file: %d %s; want refused, naming env FROM_FILE and the file", resp.StatusCode, msg)
	}
	if r := get("", "/env?name=FROM_API"); r.code != 200 {
		t.Errorf("after the refused load, the running config serves %d", r.code)
	}

	// Once running, a vanished file fails the next start, as an event.
	os.Remove(secretFile)
	if code, body := c.adminDo("PUT", "/podcell/services/sec/env", `{"FROM_API": "2"}`); code != 200 {
		t.Fatalf("PUT env: %d %s", code, body)
	}
	var events []struct {
		Kind    string `json:"kind"`
		Message string `json:"message"`
	}
	eventually(t, time.Minute, "no start-failure event for the vanished file", func() bool {
		get("", "/") // in case the new revision waits for traffic
		c.adminJSON("GET", "/podcell/events?service=sec", &events)
		for _, e := range events {
			if e.Kind == "start_failure" && strings.Contains(e.Message, "env FROM_FILE: {file."+secretFile+"}: the file does not exist") {
				return true
			}
		}
		return false
	})
}
