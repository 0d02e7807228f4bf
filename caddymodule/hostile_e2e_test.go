package caddymodule_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The hostile-repository suite: repositories that attack the host podcell
// builds on, each deployed through the admin API of a running Caddy as a
// user would, and for each the host checked afterwards: the victim file
// untouched, Caddy alive and serving its other sites, the build failed
// with a reason that names what was refused. Issue 10.

// hostileRepo is a served repository with regular files and symlinks.
func hostileRepo(t *testing.T, files, links map[string]string) *gitRepo {
	t.Helper()
	repo := newGitRepo(t)
	for name, target := range links {
		p := filepath.Join(repo.work, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	repo.commit("attack", files)
	return repo
}

// upToRoot climbs from any directory to / with enough "..": a relative
// symlink target that go-git does not rewrite, unlike an absolute one.
func upToRoot(abs string) string {
	return strings.Repeat("../", 40) + strings.TrimPrefix(abs, "/")
}

// startHostileCaddy serves hello at {http} and API-declared services at
// <name>.apps.localhost on the same port.
func startHostileCaddy(t *testing.T, opts ...option) *caddyProc {
	t.Helper()
	for _, img := range []string{"python3.11-debian", "node20-debian"} {
		if _, err := exec.Command("podman", "image", "exists", "localhost/podcell-runtime:"+img).CombinedOutput(); err != nil {
			t.Fatalf("the local %s runtime image is missing: run make base-images", img)
		}
	}
	opts = append([]option{
		withGlobal("runtime_image python3.11-debian localhost/podcell-runtime:python3.11-debian"),
		withGlobal("runtime_image node20-debian localhost/podcell-runtime:node20-debian"),
	}, opts...)
	return startCaddy(t, `
http://{http} {
	podcell hello {
		image {image}
		pause_after off
	}
}
http://*.apps.localhost:{httpport} {
	podcell {
		hosts *.apps.localhost
	}
}`, opts...)
}

// deployAPI declares service name built from repo and waits for its first
// build to end; it returns the build's status and reason.
func (c *caddyProc) deployAPI(name string, repo *gitRepo, git string) (status, reason string) {
	c.t.Helper()
	body := fmt.Sprintf(`{"git": {"url": %q, %s}, "pause_after": -1, "queue_timeout": "2m"}`, repo.url, git)
	if code, out := c.adminDo("PUT", "/podcell/services/"+name, body); code != 201 {
		c.t.Fatalf("declare %s: %d %s", name, code, out)
	}
	eventually(c.t, 5*time.Minute, name+"'s first build to end", func() bool {
		status, reason = c.buildStatus(name, 1)
		return status == "failed" || status == "succeeded"
	})
	return status, reason
}

// checkHostAlive: Caddy runs, serves its other site, and its memory did
// not balloon.
func (c *caddyProc) checkHostAlive(after string) {
	c.t.Helper()
	select {
	case <-c.exited:
		c.t.Fatalf("after %s: caddy exited:\n%s", after, tail(c.logs(), 40))
	default:
	}
	if r := c.get("/"); r.code != 200 {
		c.t.Errorf("after %s: the other site answered %d %q %v, want 200", after, r.code, r.body, r.err)
	}
	if rss := rssMiB(c.t, c.cmd.Process.Pid); rss > 1024 {
		c.t.Errorf("after %s: caddy's resident memory is %d MiB", after, rss)
	}
}

func randomData(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func rssMiB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb / 1024
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

func TestHostileRepositories(t *testing.T) {
	e2e(t)
	c := startHostileCaddy(t, withGlobal("max_repo_size 1MB"))
	hostDir := t.TempDir()
	victim := filepath.Join(hostDir, "victim.sh")
	const original = "echo original\n"
	secret := fmt.Sprintf("HOSTSECRET%d", time.Now().UnixNano())
	secretFile := filepath.Join(hostDir, "secret.json")
	for file, content := range map[string]string{victim: original, secretFile: `{"scripts": {"start": "echo ` + secret + `"}}`} {
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const pyStart = `"runtime": "python3.11-debian", "start": "python3 app.py"`
	const nodeStart = `"runtime": "node20-debian"`
	for _, a := range []struct {
		name  string
		git   string
		files map[string]string
		links map[string]string
		want  string // in the build's failure reason; "": the build succeeds
	}{
		// podcell wrote its Containerfile there, through the link: the
		// Procfile's web: line landed in a host file. Now the name is
		// podcell's own, left out of the build context: the build works.
		{"cfwrite", `"runtime": "python3.11-debian"`,
			map[string]string{"app.py": pyApp, "message.txt": "x", "Procfile": "web: python3 app.py $(id >&2)\n"},
			map[string]string{".podcell.Containerfile": upToRoot(victim)}, ""},
		// podcell read it whole into memory: every site went down.
		{"devzero", nodeStart, map[string]string{"server.js": "x"},
			map[string]string{"package.json": upToRoot("/dev/zero")}, "package.json"},
		// A host file's start script became the image's CMD and showed in the log.
		{"hostjson", nodeStart, map[string]string{"server.js": "x"},
			map[string]string{"package.json": upToRoot(secretFile)}, "package.json"},
		{"requirements", pyStart, map[string]string{"app.py": pyApp},
			map[string]string{"requirements.txt": upToRoot(secretFile)}, "requirements.txt"},
		{"ignorefile", pyStart, map[string]string{"app.py": pyApp, "message.txt": "x"},
			map[string]string{".dockerignore": upToRoot("/dev/zero")}, ".dockerignore"},
		// The build context would carry a link out of it.
		{"contextlink", pyStart, map[string]string{"app.py": pyApp, "message.txt": "x"},
			map[string]string{"hostetc": upToRoot("/etc")}, "hostetc"},
		// Only a timeout bounded a clone: a repository could fill the
		// disk and go-git's memory. 2 MiB of random data, over 1 MB.
		{"bigrepo", pyStart, map[string]string{"app.py": pyApp, "blob.bin": randomData(t, 2<<20)},
			nil, "size limit: its server sent more than 1 MiB for this commit; build a smaller repository (or a root_dir of a smaller one), or raise podcell's global option max_repo_size (max_repo_mb in JSON), now 1 MiB"},
		// A build step that forks without end: the pids limit stops it
		// (the timeout then ends the step) and the host stays responsive.
		{"forkbomb", pyStart + `, "build": "f() { f | f & }; f; sleep 600", "build_pids": 64, "build_timeout": "20s"`,
			map[string]string{"app.py": pyApp, "message.txt": "x"}, nil, "build_pids"},
		// A build step that allocates more than the service's build
		// memory: the build's cgroup holds it, the kernel kills it there
		// (not Caddy or another site), and the reason names the limit.
		{"memhog", pyStart + `, "build": "python3 hog.py", "build_memory_mb": 128`,
			map[string]string{"app.py": pyApp, "message.txt": "x", "hog.py": "b = b'x' * (400 << 20)\nprint('allocated')\n"},
			nil, "ran out of memory (build memory limit 128 MiB): raise build_memory"},
	} {
		t.Run(a.name, func(t *testing.T) {
			c.t = t
			status, reason := c.deployAPI(a.name, hostileRepo(t, a.files, a.links), a.git)
			switch {
			case a.want == "" && status != "succeeded":
				t.Errorf("build %s, reason %q: want succeeded", status, reason)
			case a.want != "" && (status != "failed" || !strings.Contains(reason, a.want)):
				t.Errorf("build %s, reason %q: want failed, naming %s", status, reason, a.want)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != original {
				t.Errorf("the victim file changed: %q, %v", b, err)
			}
			_, log := c.adminDo("GET", "/podcell/services/"+a.name+"/builds/1/log", "")
			if strings.Contains(log+reason, secret) {
				t.Errorf("the host file's content reached the build log or reason")
			}
			c.checkHostAlive(a.name)
		})
	}
	c.t = t
}
