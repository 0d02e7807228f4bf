package caddymodule_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// podmanImage is one image as `podman images -a --format json` shows it.
type podmanImage struct {
	ID      string   `json:"Id"`
	Names   []string `json:"Names"`
	History []string `json:"History"`
}

func podmanImages(t *testing.T) []podmanImage {
	t.Helper()
	var out []byte
	var err error
	// A listing fails when an image goes while it runs (the collection
	// removing one): try again.
	for range 5 {
		if out, err = exec.Command("podman", "images", "-a", "--format", "json").Output(); err == nil {
			break
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			out = ee.Stderr
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("podman images: %v\n%s", err, out)
	}
	var list []podmanImage
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("podman images: %v", err)
	}
	return list
}

// serviceImages are the IDs of the images that ever carried the name of
// service's builds (tagged now or not).
func serviceImages(t *testing.T, service string) []string {
	var ids []string
	for _, img := range podmanImages(t) {
		for _, n := range append(img.Names, img.History...) {
			if strings.HasPrefix(n, "localhost/podcell-build/"+service+":") {
				ids = append(ids, img.ID[:12])
				break
			}
		}
	}
	return ids
}

// TestImageGC deploys four commits with keep_images 1 and checks that only
// the serving image and the one before it stay, that rollback reaches the
// kept one and refuses the removed one with a clear error, that a failed
// build's layers go, and that deleting the service removes every image and
// layer its builds left.
func TestImageGC(t *testing.T) {
	e2e(t)
	if err := exec.Command("podman", "image", "exists", "localhost/podcell-runtime:python3.11-debian").Run(); err != nil {
		t.Fatalf("the local Python runtime image is missing: run make base-images")
	}
	var b [3]byte
	rand.Read(b[:])
	svc := "gc" + hex.EncodeToString(b[:]) // image names are per service, not per owner
	repo := newGitRepo(t)
	repo.commit("v1", map[string]string{"app.py": pyApp, "message.txt": "v1", "requirements.txt": "# stdlib only\n"})
	c := startCaddy(t, `
http://:{httpport} {
	podcell {
		hosts *.apps.localhost
	}
}`, withGlobal("runtime_image python3.11-debian localhost/podcell-runtime:python3.11-debian"), withGlobal("keep_images 1"))
	before := map[string]bool{}
	for _, img := range podmanImages(t) {
		before[img.ID[:11]] = true
	}
	// Builds run as the build user: its store has the layers (the cache).
	out, err := buildUserPodman("images", "--all", "--quiet", "--no-trunc").Output()
	if err != nil {
		t.Fatalf("podman images as the build user: %v", err)
	}
	for _, id := range strings.Fields(string(out)) {
		before[strings.TrimPrefix(id, "sha256:")[:11]] = true
	}
	get := func() reply {
		req, _ := http.NewRequest("GET", "http://"+c.http+"/", nil)
		req.Host = svc + ".apps.localhost"
		resp, err := client.Do(req)
		if err != nil {
			return reply{err: err}
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return reply{code: resp.StatusCode, body: string(body)}
	}
	spec := fmt.Sprintf(`{"git": {"url": %q, "ref": "main", "runtime": "python3.11-debian", "start": "python3 app.py"}, "pause_after": -1, "queue_timeout": "2m"}`, repo.url)
	if code, body := c.adminDo("PUT", "/podcell/services/"+svc, spec); code != 201 {
		t.Fatalf("declare: %d %s", code, body)
	}
	t.Cleanup(func() {
		// A test that failed before the delete below leaves nothing either.
		if code, _ := c.adminDo("DELETE", "/podcell/services/"+svc, ""); code == 204 {
			eventually(t, 2*time.Minute, "images of "+svc+" stay", func() bool { return len(serviceImages(t, svc)) == 0 })
		}
	})
	c.waitFirstBuild(svc)
	if r := get(); r.code != 200 || r.body != "v1" {
		t.Fatalf("first request: %d %q %v", r.code, r.body, r.err)
	}
	// The build of each version's id, and its revision.
	builds := map[string]int{"v1": 1}
	deploy := func(msg string, files map[string]string) int {
		t.Helper()
		repo.commit(msg, files)
		var dep struct {
			Build int `json:"build"`
		}
		if code := c.adminJSON("POST", "/podcell/services/"+svc+"/deploy", &dep); code != http.StatusAccepted {
			t.Fatalf("deploy %s: %d", msg, code)
		}
		eventually(t, 3*time.Minute, "build of "+msg+" did not end", func() bool {
			st, _ := c.buildStatus(svc, dep.Build)
			return st == "failed" || st == "succeeded"
		})
		return dep.Build
	}
	for _, v := range []string{"v2", "v3", "v4"} {
		builds[v] = deploy(v, map[string]string{"message.txt": v})
		eventually(t, time.Minute, v+" does not serve", func() bool { return get().body == v })
	}
	// keep_images 1: the serving image (v4) and the one before it (v3).
	eventually(t, time.Minute, "old images stay", func() bool { return len(serviceImages(t, svc)) == 2 })

	revision := func(v string) int {
		var revs []struct {
			Seq   int `json:"seq"`
			Build int `json:"build"`
		}
		c.adminJSON("GET", "/podcell/services/"+svc+"/revisions", &revs)
		for _, r := range revs {
			if r.Build == builds[v] {
				return r.Seq
			}
		}
		t.Fatalf("no revision of build %d (%s): %+v", builds[v], v, revs)
		return 0
	}
	if code, body := c.adminDo("POST", "/podcell/services/"+svc+"/rollback", fmt.Sprintf(`{"revision": %d}`, revision("v3"))); code != 200 {
		t.Fatalf("rollback to v3 (kept): %d %s", code, body)
	}
	eventually(t, time.Minute, "the rollback to v3 does not serve", func() bool { return get().body == "v3" })
	seq := revision("v1")
	code, body := c.adminDo("POST", "/podcell/services/"+svc+"/rollback", fmt.Sprintf(`{"revision": %d}`, seq))
	if code != http.StatusGone || !strings.Contains(body, fmt.Sprintf("revision %d of %s (build 1)", seq, svc)) ||
		!strings.Contains(body, "was removed") || !strings.Contains(body, "keep_images") {
		t.Errorf("rollback to v1 (removed): %d %s; want 410 naming the revision and the removed image", code, body)
	}
	if r := get(); r.code != 200 || r.body != "v3" {
		t.Errorf("after the refused rollback: %d %q, want v3 serving", r.code, r.body)
	}
	// After the rollback the window is v3 (serving) and v4 (the newest other).
	eventually(t, time.Minute, "images after the rollback", func() bool { return len(serviceImages(t, svc)) == 2 })

	// A failed build's finished steps leave layers: they go too, and the
	// cached layers it used (the kept images' parents) stay.
	// (Named for the service: another test's broken build would be cached.)
	id := deploy("broken", map[string]string{"requirements.txt": "this-package-does-not-exist-" + svc + "==1.0\n"})
	if st, _ := c.buildStatus(svc, id); st != "failed" {
		t.Fatalf("broken build: %s, want failed", st)
	}
	made, cached := c.buildLayers(svc, id)
	if len(made) == 0 || len(cached) == 0 {
		t.Fatalf("the failed build's log names %d new and %d cached layers; want some of each", len(made), len(cached))
	}
	eventually(t, time.Minute, fmt.Sprintf("the failed build's layers %v stay", made), func() bool { return noneExists(made) })
	for _, l := range cached {
		if !imageExists(l) {
			t.Errorf("cached layer %s, a parent of the kept images, was removed", l)
		}
	}
	if r := get(); r.code != 200 || r.body != "v3" {
		t.Errorf("after the failed build: %d %q, want v3 serving", r.code, r.body)
	}

	// Every layer a build of the service made (not there before the test).
	var ours []string
	for b := 1; b <= id; b++ {
		made, cached := c.buildLayers(svc, b)
		for _, l := range append(made, cached...) {
			if !before[l] {
				ours = append(ours, l)
			}
		}
	}
	if code, body := c.adminDo("DELETE", "/podcell/services/"+svc, ""); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	eventually(t, 2*time.Minute, "the deleted service's images stay", func() bool { return len(serviceImages(t, svc)) == 0 })
	eventually(t, time.Minute, fmt.Sprintf("the deleted service's build layers %v stay", ours), func() bool { return noneExists(ours) })
	if !imageExists("localhost/podcell-runtime:python3.11-debian") {
		t.Errorf("the base image was removed")
	}
	if !strings.Contains(c.logs(), `"msg":"removed images"`) || !strings.Contains(c.logs(), "freed_bytes") {
		t.Errorf("no log of removed images and freed space")
	}
}

// TestKeepImagesValidation: a bad keep_images stops the config with an
// error that says what to use (before anything touches Podman).
func TestKeepImagesValidation(t *testing.T) {
	e2e(t)
	dir := t.TempDir()
	for _, tc := range []struct{ name, file, config, want string }{
		{"negative", "Caddyfile", "{\n\tadmin off\n\tpodcell {\n\t\tkeep_images -1\n\t}\n}\n:0 {\n\trespond ok\n}\n", `keep_images \"-1\": want a whole number >= 0`},
		{"not a number", "Caddyfile", "{\n\tadmin off\n\tpodcell {\n\t\tkeep_images all\n\t}\n}\n:0 {\n\trespond ok\n}\n", `keep_images \"all\": want a whole number >= 0`},
		{"no argument", "Caddyfile", "{\n\tadmin off\n\tpodcell {\n\t\tkeep_images\n\t}\n}\n:0 {\n\trespond ok\n}\n", "keep_images takes one argument"},
		{"beyond the revisions", "caddy.json", `{"admin": {"disabled": true}, "apps": {"podcell": {"keep_images": 60, "data_dir": "` + dir + `/data"}}}`, "keep_images 60: use 0 to 49"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.file)
			os.WriteFile(file, []byte(tc.config), 0o644)
			args := []string{"validate", "--config", file}
			if tc.file == "Caddyfile" {
				args = append(args, "--adapter", "caddyfile")
			}
			out, err := exec.Command(caddyBin, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("caddy validate accepted it:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("caddy validate said:\n%s\nwant it to contain %q", tail(string(out), 5), tc.want)
			}
		})
	}
}

// buildLayers are the layers a build's log names: those its steps made and
// those they took from the cache.
func (c *caddyProc) buildLayers(service string, build int) (made, cached []string) {
	c.t.Helper()
	code, body := c.adminDo("GET", fmt.Sprintf("/podcell/services/%s/builds/%d/log", service, build), "")
	if code != 200 {
		c.t.Fatalf("log of build %d: %d %s", build, code, body)
	}
	fromCache := false
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "--> Using cache ") {
			fromCache = true
			continue
		}
		if id, ok := strings.CutPrefix(line, "--> "); ok && len(id) == 11 {
			if fromCache {
				cached = append(cached, id)
			} else {
				made = append(made, id)
			}
		}
		fromCache = false
	}
	return made, cached
}

// imageExists says whether ref is an image of the rootful store or of the
// build user's (podcell, the default build_user), where builds run and
// their layers stay.
func imageExists(ref string) bool {
	if exec.Command("podman", "image", "exists", ref).Run() == nil {
		return true
	}
	return buildUserPodman("image", "exists", ref).Run() == nil
}

// buildUserPodman is podman with args as the build user, podcell.
func buildUserPodman(args ...string) *exec.Cmd {
	return exec.Command("runuser", append([]string{"-u", "podcell", "--", "sh", "-c",
		`cd ~ && HOME=~ XDG_RUNTIME_DIR=/run/user/$(id -u) exec podman "$@"`, "podman"}, args...)...)
}

func noneExists(refs []string) bool {
	for _, r := range refs {
		if imageExists(r) {
			return false
		}
	}
	return true
}
