package caddymodule_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDeployBuildLimit: a commit whose build step allocates more than the
// service's build_memory fails with a reason naming the limit, in the
// build's record, and the running revision keeps serving.
func TestDeployBuildLimit(t *testing.T) {
	e2e(t)
	if _, err := exec.Command("podman", "image", "exists", "localhost/podcell-runtime:python3.11-debian").CombinedOutput(); err != nil {
		t.Fatalf("the local Python runtime image is missing: run make base-images")
	}
	repo := newGitRepo(t)
	repo.commit("v1", map[string]string{"app.py": pyApp, "message.txt": "v1", "build.py": "print('build ok')\n"})
	c := startCaddy(t, strings.ReplaceAll(`
http://{http} {
	podcell limited {
		git REPO main
		runtime python3.11-debian
		build "python3 build.py"
		start "python3 app.py"
		build_memory 128MB
		build_timeout 2m
		memory 256MB
		pause_after off
		queue_timeout 2m
	}
}`, "REPO", repo.url)+"\n", withGlobal("runtime_image python3.11-debian localhost/podcell-runtime:python3.11-debian"), withGlobal("build_pids 512"))
	c.waitFirstBuild("limited")
	if r := c.get("/"); r.code != 200 || r.body != "v1" {
		t.Fatalf("first request: %d %q", r.code, r.body)
	}

	repo.commit("hog", map[string]string{"build.py": "b = b'x' * (400 << 20)\nprint('allocated')\n"})
	var dep struct {
		Build int `json:"build"`
	}
	c.adminJSON("POST", "/podcell/services/limited/deploy", &dep)
	eventually(t, 3*time.Minute, "the hog build did not finish", func() bool {
		st, _ := c.buildStatus("limited", dep.Build)
		return st == "failed" || st == "succeeded"
	})
	st, reason := c.buildStatus("limited", dep.Build)
	t.Logf("build %d: %s: %s", dep.Build, st, strings.SplitN(reason, "\n", 2)[0])
	if st != "failed" || !strings.Contains(reason, "ran out of memory (build memory limit 128 MiB): raise build_memory") {
		t.Errorf("hog build: %s %q, want failed naming build_memory", st, reason)
	}
	if r := c.get("/"); r.code != 200 || r.body != "v1" {
		t.Errorf("after the failed build: %d %q, want v1 still serving", r.code, r.body)
	}
}
