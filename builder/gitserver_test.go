package builder

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The tests serve git repositories over HTTP themselves: git's own
// http-backend (the smart protocol, as GitHub speaks it) under net/http/cgi.
// No network beyond 127.0.0.1 is used.

// fixtureRepo is the repository most tests clone, served as app.git (which
// lets clients fetch any commit by SHA, as GitHub does) and as strict.git
// (git's default: only advertised refs).
//
//	A (tag v1 annotated, tag light): Python app at the root (testdata/pyapp),
//	  Node app in apps/node (testdata/nodeapp), a Procfile alone in tools,
//	  README "v1"
//	F on branch feature (from A): the apps' messages changed (message.py,
//	  apps/node/message.json), nothing else
//	B on main (from A): README "v2"
type fixtureRepo struct {
	server  *httptest.Server
	A, B, F string // commit SHAs
	root    string // the directory of the served repositories
	git     *gitCmd
	// handlers answer paths under /handler/<name>/ instead of git.
	mu       sync.Mutex
	handlers map[string]http.Handler
}

func (f *fixtureRepo) url(name string) string { return f.server.URL + "/" + name }

var (
	fixtureOnce sync.Once
	fixture     *fixtureRepo
	fixtureErr  error
	fixtureDir  string
)

// TestMain removes the served repositories after all tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if fixture != nil {
		fixture.server.Close()
	}
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

// repos returns the served fixture repositories, creating them once.
func repos(t testing.TB) *fixtureRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs git (for git http-backend): %v", err)
		}
		t.Skipf("git is not installed: %v", err)
	}
	fixtureOnce.Do(func() { fixture, fixtureErr = makeFixture() })
	if fixtureErr != nil {
		t.Fatalf("fixture repositories: %v", fixtureErr)
	}
	return fixture
}

func makeFixture() (*fixtureRepo, error) {
	dir, err := os.MkdirTemp("", "podcell-builder-git-")
	if err != nil {
		return nil, err
	}
	fixtureDir = dir
	work := filepath.Join(dir, "work")
	root := filepath.Join(dir, "served")
	g := &gitCmd{env: []string{
		"HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=podcell test", "GIT_AUTHOR_EMAIL=test@podcell.invalid",
		"GIT_COMMITTER_NAME=podcell test", "GIT_COMMITTER_EMAIL=test@podcell.invalid",
	}}
	f := &fixtureRepo{root: root, git: g, handlers: map[string]http.Handler{}}
	g.run(dir, "init", "-q", "-b", "main", work)
	g.copyDir("testdata/pyapp", work)
	g.copyDir("testdata/nodeapp", filepath.Join(work, "apps", "node"))
	// The dependency manifests differ in every test run, so a run's first
	// build installs for real and its rebuild can only reuse that build's
	// layer, not one left by an earlier run.
	nonce := randHex(8)
	g.edit(filepath.Join(work, "requirements.txt"), func(s string) string { return s + "# fixture run " + nonce + "\n" })
	g.edit(filepath.Join(work, "apps", "node", "package.json"), func(s string) string {
		return strings.Replace(s, `"private": true,`, `"private": true,`+"\n  \"description\": \"fixture run "+nonce+"\",", 1)
	})
	g.write(filepath.Join(work, "tools", "Procfile"), "web: python3 -m http.server $PORT\n")
	g.write(filepath.Join(work, "README.md"), "v1\n")
	g.run(work, "add", "-A")
	g.run(work, "commit", "-q", "-m", "A: python app, node app in apps/node")
	f.A = g.out(work, "rev-parse", "HEAD")
	g.run(work, "tag", "-a", "v1", "-m", "version 1")
	g.run(work, "tag", "light")

	g.run(work, "checkout", "-q", "-b", "feature")
	g.write(filepath.Join(work, "message.py"), "MESSAGE = \"hello from feature\"\n")
	g.write(filepath.Join(work, "apps", "node", "message.json"), `{"message": "hello from node feature"}`+"\n")
	g.run(work, "commit", "-q", "-am", "F: new message")
	f.F = g.out(work, "rev-parse", "HEAD")

	g.run(work, "checkout", "-q", "main")
	g.write(filepath.Join(work, "README.md"), "v2\n")
	g.run(work, "commit", "-q", "-am", "B: readme")
	f.B = g.out(work, "rev-parse", "HEAD")

	for _, name := range []string{"app.git", "strict.git"} {
		g.run(dir, "clone", "-q", "--bare", work, filepath.Join(root, name))
	}
	g.run(filepath.Join(root, "app.git"), "config", "uploadpack.allowAnySHA1InWant", "true")
	if g.err != nil {
		return nil, g.err
	}

	execPath := g.out(dir, "--exec-path")
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return nil, fmt.Errorf("git-http-backend not found: %w", err)
	}
	cgiHandler := &cgi.Handler{
		Path:   backend,
		Stderr: io.Discard, // "not our ref", "Not a git repository": the tests check what the client makes of them
		Env:    []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + dir},
	}
	f.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/private/") {
			// What GitHub answers for a private (or missing) repository.
			w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
			http.Error(w, "Authentication required", http.StatusUnauthorized)
			return
		}
		if rest, ok := strings.CutPrefix(r.URL.Path, "/handler/"); ok {
			name, _, _ := strings.Cut(rest, "/")
			f.mu.Lock()
			h := f.handlers[name]
			f.mu.Unlock()
			if h == nil {
				http.NotFound(w, r)
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/notgit/") {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>a web page, not a repository</html>")
			return
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	return f, g.err
}

// gitCmd runs git, keeping the first error.
type gitCmd struct {
	env []string
	err error
}

func (g *gitCmd) out(dir string, args ...string) string {
	if g.err != nil {
		return ""
	}
	out, err := execGit(g, dir, args...).CombinedOutput()
	if err != nil {
		g.err = fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (g *gitCmd) run(dir string, args ...string) { g.out(dir, args...) }

func execGit(g *gitCmd, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), g.env...)
	return cmd
}

func (g *gitCmd) write(file, content string) {
	if g.err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		g.err = err
		return
	}
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		g.err = err
	}
}

func (g *gitCmd) edit(file string, f func(string) string) {
	if g.err != nil {
		return
	}
	data, err := os.ReadFile(file)
	if err != nil {
		g.err = err
		return
	}
	if out := f(string(data)); out != string(data) {
		g.write(file, out)
	} else {
		g.err = fmt.Errorf("edit %s changed nothing", file)
	}
}

func (g *gitCmd) copyDir(src, dst string) {
	if g.err != nil {
		return
	}
	g.err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		g.write(filepath.Join(dst, rel), string(data))
		return g.err
	})
}

// serve commits what setup puts in a fresh work tree (setup gets the git
// runner and the work tree's path; it may make the commit itself, e.g. by
// hand with git commit-tree) and serves the result as a new repository. It returns the
// repository's URL; the repository is removed when the test ends.
func (f *fixtureRepo) serve(t testing.TB, name string, setup func(g *gitCmd, work string)) string {
	t.Helper()
	name = name + "-" + randHex(4) + ".git"
	work := filepath.Join(t.TempDir(), "work")
	g := &gitCmd{env: f.git.env}
	g.run(filepath.Dir(work), "init", "-q", "-b", "main", work)
	setup(g, work)
	if g.err == nil && execGit(g, work, "rev-parse", "-q", "--verify", "HEAD").Run() != nil {
		g.run(work, "add", "-A")
		g.run(work, "commit", "-q", "-m", "hostile")
	}
	bare := filepath.Join(f.root, name)
	g.run(filepath.Dir(work), "clone", "-q", "--bare", work, bare)
	if g.err != nil {
		t.Fatalf("repository %s: %v", name, g.err)
	}
	t.Cleanup(func() { os.RemoveAll(bare) })
	return f.url(name)
}

// handle serves h under /handler/<name>/ and returns that URL.
func (f *fixtureRepo) handle(t testing.TB, name string, h http.Handler) string {
	name = name + "-" + randHex(4)
	f.mu.Lock()
	f.handlers[name] = h
	f.mu.Unlock()
	t.Cleanup(func() {
		f.mu.Lock()
		delete(f.handlers, name)
		f.mu.Unlock()
	})
	return f.server.URL + "/handler/" + name + "/repo.git"
}

func (g *gitCmd) symlink(target, link string) {
	if g.err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		g.err = err
		return
	}
	g.err = os.Symlink(target, link)
}
