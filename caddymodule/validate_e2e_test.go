package caddymodule_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// caddyCLI runs the Caddy binary as an operator does on the host of c:
// the same home and XDG directories, so the same data dir.
func (c *caddyProc) caddyCLI(args ...string) (string, error) {
	cmd := exec.Command(caddyBin, args...)
	cmd.Env = append(os.Environ(), "HOME="+c.dir, "XDG_DATA_HOME="+c.dir, "XDG_CONFIG_HOME="+c.dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The validate-then-reload routine while Caddy runs on the data dir
// (issue 14, item 6): `caddy validate` of the running config and of a
// changed one passes (it used to fail on the store's directory lock),
// one with a bad setting fails naming it, and the validated change
// reloads and serves.
func TestValidateWhileRunning(t *testing.T) {
	e2e(t)
	site := `
http://{http} {
	podcell web {
		image {image}
		memory 256MB
	}
}
`
	c := startCaddy(t, site)
	if r := c.get("/"); r.code != 200 {
		t.Fatalf("before validating: %d %v", r.code, r.err)
	}
	running := filepath.Join(c.dir, "Caddyfile")
	validate := func(caddyfile string) (string, error) {
		file := filepath.Join(c.dir, "Caddyfile.next")
		if err := os.WriteFile(file, []byte(caddyfile), 0o644); err != nil {
			t.Fatal(err)
		}
		return c.caddyCLI("validate", "--config", file, "--adapter", "caddyfile")
	}

	if out, err := c.caddyCLI("validate", "--config", running, "--adapter", "caddyfile"); err != nil {
		t.Fatalf("caddy validate of the running config: %v\n%s", err, tail(out, 10))
	}

	bad := strings.Replace(c.caddyfile(globals+site), "owner "+c.owner, "owner "+c.owner+"\n\t\tkeep_images 99", 1)
	out, err := validate(bad)
	if err == nil || !strings.Contains(out, "keep_images 99: use 0 to") {
		t.Fatalf("caddy validate of keep_images 99: %v\n%s", err, tail(out, 10))
	}
	out, err = validate(c.caddyfile(globals + strings.Replace(site, "memory 256MB", "memory 100MB", 1)))
	if err == nil || !strings.Contains(out, "memory 100 MB is out of range") {
		t.Fatalf("caddy validate of memory 100MB: %v\n%s", err, tail(out, 10))
	}
	// A service's own bandwidth stops at what 4 cores get (4 x 200 Mbit/s).
	out, err = validate(c.caddyfile(globals + strings.Replace(site, "memory 256MB", "memory 256MB\n\t\tbandwidth 900Mbit", 1)))
	if err == nil || !strings.Contains(out, "bandwidth 900 Mbit/s is more than the top tier gets: use at most 800 Mbit/s") {
		t.Fatalf("caddy validate of bandwidth 900Mbit: %v\n%s", err, tail(out, 10))
	}

	changed := c.caddyfile(globals + strings.Replace(site, "memory 256MB", "memory 256MB\n\t\tenv GREETING validated", 1))
	if out, err := validate(changed); err != nil {
		t.Fatalf("caddy validate of the changed config: %v\n%s", err, tail(out, 10))
	}
	if out, err := c.caddyCLI("reload", "--config", filepath.Join(c.dir, "Caddyfile.next"), "--adapter", "caddyfile"); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, tail(out, 10))
	}
	// The new revision rolls the instance over; the old one answers meanwhile.
	eventually(t, 30*time.Second, "the reloaded config's env is not served", func() bool {
		r := c.get("/env?name=GREETING")
		return r.code == 200 && r.body == "validated"
	})
	if strings.Contains(c.logs(), "directory lock") {
		t.Errorf("the running Caddy logged a lock error:\n%s", tail(c.logs(), 20))
	}
}
