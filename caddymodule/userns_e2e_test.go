package caddymodule_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployBuildUserNamespace: through Caddy, a service's build step runs
// in a user namespace: the uid_map it prints into the build's log maps its
// root to an unprivileged host uid, not to host root (uid 0).
func TestDeployBuildUserNamespace(t *testing.T) {
	e2e(t) // before asking podman about the image: without Podman it skips
	if _, err := exec.Command("podman", "image", "exists", "localhost/podcell-runtime:python3.11-debian").CombinedOutput(); err != nil {
		t.Fatalf("the local Python runtime image is missing: run make base-images")
	}
	repo := newGitRepo(t)
	repo.commit("v1", map[string]string{"app.py": pyApp, "message.txt": "v1"})
	// A new step each run: a step from the layer cache does not run.
	var nonce [4]byte
	rand.Read(nonce[:])
	c := startCaddy(t, strings.ReplaceAll(strings.ReplaceAll(`
http://{http} {
	podcell userns {
		git REPO main
		runtime python3.11-debian
		build "echo run NONCE; sed 's/^/UIDMAP /' /proc/self/uid_map"
		start "python3 app.py"
		pause_after off
		queue_timeout 2m
	}
}`, "REPO", repo.url), "NONCE", hex.EncodeToString(nonce[:]))+"\n", withGlobal("runtime_image python3.11-debian localhost/podcell-runtime:python3.11-debian"))
	c.waitFirstBuild("userns")
	if r := c.get("/"); r.code != 200 || r.body != "v1" {
		t.Fatalf("first request: %d %q", r.code, r.body)
	}
	code, body := c.adminDo("GET", "/podcell/services/userns/builds/1/log", "")
	if code != 200 {
		t.Fatalf("build log: %d %s", code, body)
	}
	root := ""
	for _, l := range strings.Split(body, "\n") {
		if f := strings.Fields(strings.TrimSpace(l)); len(f) == 4 && f[0] == "UIDMAP" && f[1] == "0" {
			root = f[2]
		}
	}
	switch root {
	case "":
		t.Fatalf("no uid_map line for uid 0 in the build log:\n%s", body)
	case "0":
		t.Fatalf("the build step's root is host root:\n%s", body)
	}
	t.Logf("the build step's root is host uid %s", root)
}

// TestBuildUserValidation: a build_user that does not exist stops the
// config with an error naming build_user and the fix.
func TestBuildUserValidation(t *testing.T) {
	e2e(t) // provisioning connects to Podman; and it runs the test's Caddy binary
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	config := "{\n\tadmin off\n\tpodcell {\n\t\tdata_dir " + dir + "/data\n\t\tbuild_user podcell-no-such-user\n\t}\n}\n:0 {\n\trespond ok\n}\n"
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(caddyBin, "validate", "--config", file, "--adapter", "caddyfile").CombinedOutput()
	if err == nil {
		t.Fatalf("caddy validate accepted it:\n%s", out)
	}
	for _, want := range []string{`build_user \"podcell-no-such-user\" is not a user of this host`, "make setup", "scripts/setup-rootless.sh"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("caddy validate said:\n%s\nwant it to contain %q", tail(string(out), 5), want)
		}
	}
}
