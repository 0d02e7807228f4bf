package builder

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cloneInto clones src into a fresh directory under the default repository
// limits and returns it, the commit and the log.
func cloneInto(t *testing.T, src Source) (dir, commit, log string, err error) {
	t.Helper()
	return cloneWithLimits(t, src, repoLimits{bytes: DefaultMaxRepoBytes, files: DefaultMaxRepoFiles})
}

func cloneWithLimits(t *testing.T, src Source, lim repoLimits) (dir, commit, log string, err error) {
	t.Helper()
	src, err = src.validate()
	if err != nil {
		return "", "", "", err
	}
	dir = filepath.Join(t.TempDir(), "src")
	var lines []string
	sink := newLogSink(func(l string) { lines = append(lines, l) }, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	commit, err = clone(ctx, src, dir, sink, lim)
	sink.flush()
	return dir, commit, strings.Join(lines, "\n"), err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestCloneRefs(t *testing.T) {
	f := repos(t)
	for _, tc := range []struct {
		name, repo, ref string
		commit          string
		message, readme string
		fallback        bool // the server refuses single commits
	}{
		{name: "default branch", repo: "app.git", ref: "", commit: f.B, message: "hello from python", readme: "v2"},
		{name: "branch main", repo: "app.git", ref: "main", commit: f.B, message: "hello from python", readme: "v2"},
		{name: "branch feature", repo: "app.git", ref: "feature", commit: f.F, message: "hello from feature", readme: "v1"},
		{name: "full ref name", repo: "app.git", ref: "refs/heads/feature", commit: f.F, message: "hello from feature", readme: "v1"},
		{name: "annotated tag", repo: "app.git", ref: "v1", commit: f.A, message: "hello from python", readme: "v1"},
		{name: "lightweight tag", repo: "app.git", ref: "light", commit: f.A, message: "hello from python", readme: "v1"},
		{name: "commit SHA", repo: "app.git", ref: f.A, commit: f.A, message: "hello from python", readme: "v1"},
		{name: "commit SHA, strict server", repo: "strict.git", ref: f.F, commit: f.F, message: "hello from feature", readme: "v1", fallback: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, commit, log, err := cloneInto(t, Source{URL: f.url(tc.repo), Ref: tc.ref})
			if err != nil {
				t.Fatalf("clone: %v\nlog:\n%s", err, log)
			}
			if commit != tc.commit {
				t.Errorf("commit = %s, want %s", commit, tc.commit)
			}
			if got := readFile(t, filepath.Join(dir, "message.py")); !strings.Contains(got, tc.message) {
				t.Errorf("message.py = %q, want %q", got, tc.message)
			}
			if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "README.md"))); got != tc.readme {
				t.Errorf("README.md = %q, want %q", got, tc.readme)
			}
			if _, err := os.Stat(filepath.Join(dir, "apps", "node", "package.json")); err != nil {
				t.Errorf("monorepo subdirectory missing: %v", err)
			}
			if !tc.fallback {
				// Depth 1: the history is cut at the commit built.
				if _, err := os.Stat(filepath.Join(dir, ".git", "shallow")); err != nil {
					t.Errorf("clone is not shallow: %v", err)
				}
			}
			if got := strings.Contains(log, "fetching all branches to find it"); got != tc.fallback {
				t.Errorf("fallback to a full fetch = %v, want %v; log:\n%s", got, tc.fallback, log)
			}
			t.Logf("log:\n%s", log)
		})
	}
}

func TestCloneNoTags(t *testing.T) {
	f := repos(t)
	dir, _, _, err := cloneInto(t, Source{URL: f.url("app.git"), Ref: "feature"})
	if err != nil {
		t.Fatal(err)
	}
	// Single branch, no tags: only the branch asked for is fetched.
	entries, _ := os.ReadDir(filepath.Join(dir, ".git", "refs", "tags"))
	if len(entries) != 0 {
		t.Errorf("tags were fetched: %v", entries)
	}
	packed, _ := os.ReadFile(filepath.Join(dir, ".git", "packed-refs"))
	if strings.Contains(string(packed), "refs/tags/") || strings.Contains(string(packed), "refs/remotes/origin/main") {
		t.Errorf("more than the branch was fetched:\n%s", packed)
	}
}

func TestRootDir(t *testing.T) {
	f := repos(t)
	dir, _, _, err := cloneInto(t, Source{URL: f.url("app.git")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want string }{
		{"apps/node", "apps/node"}, {"./apps/node/", "apps/node"}, {"/apps/node", "apps/node"}, {"", ""}, {"/", ""},
	} {
		clean, err := cleanRootDir(tc.in)
		if err != nil || clean != tc.want {
			t.Errorf("cleanRootDir(%q) = %q, %v; want %q", tc.in, clean, err, tc.want)
			continue
		}
		got, err := resolveRootDir(dir, clean)
		if err != nil {
			t.Errorf("resolveRootDir(%q): %v", clean, err)
			continue
		}
		if want := filepath.Join(dir, tc.want); got != want {
			t.Errorf("resolveRootDir(%q) = %s, want %s", clean, got, want)
		}
	}
	// A link in the repository cannot lead the build context out of it.
	if err := os.Symlink("/etc", filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if got, err := resolveRootDir(dir, "escape"); err == nil {
		t.Errorf("root dir through a symlink to /etc resolved to %s", got)
	}
	for _, bad := range []struct{ dir, want string }{
		{"does/not/exist", "does not exist"},
		{"README.md", "is a file"},
	} {
		_, err := resolveRootDir(dir, bad.dir)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != "root_dir" || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("resolveRootDir(%q) = %v, want a root_dir error saying %q", bad.dir, err, bad.want)
		}
	}
	for _, bad := range []string{"../x", "apps/../../x", `apps\node`, ".git/hooks"} {
		if _, err := cleanRootDir(bad); err == nil {
			t.Errorf("cleanRootDir(%q) accepted", bad)
		}
	}
}

func TestSourceErrors(t *testing.T) {
	f := repos(t)
	for _, tc := range []struct {
		name  string
		src   Source
		field string
		want  string // in the message
	}{
		{"empty url", Source{URL: ""}, "url", "is required"},
		{"no scheme", Source{URL: "github.com/owner/repo"}, "url", "needs a scheme"},
		{"malformed", Source{URL: "https://exa mple.com/x"}, "url", "malformed"},
		{"bad escape", Source{URL: "https://example.com/%zz"}, "url", "malformed"},
		{"ssh", Source{URL: "ssh://git@github.com/owner/repo"}, "url", "only https://"},
		{"file", Source{URL: "file:///etc"}, "url", "only https://"},
		{"no path", Source{URL: "https://github.com"}, "url", "no repository path"},
		{"credentials", Source{URL: "https://user:token@github.com/owner/repo"}, "url", "credentials"},
		{"bad ref", Source{URL: f.url("app.git"), Ref: "a..b"}, "ref", "not a valid"},
		{"unknown ref", Source{URL: f.url("app.git"), Ref: "nope"}, "ref", "branches: feature, main; tags: light, v1"},
		{"short SHA", Source{URL: f.url("app.git"), Ref: f.A[:7]}, "ref", "full 40-character SHA"},
		{"unknown SHA", Source{URL: f.url("app.git"), Ref: strings.Repeat("ab", 20)}, "ref", "no branch of the repository contains"},
		{"unknown SHA, strict", Source{URL: f.url("strict.git"), Ref: strings.Repeat("ab", 20)}, "ref", "no branch of the repository contains"},
		{"missing repo", Source{URL: f.url("missing.git")}, "url", "404"},
		{"private repo", Source{URL: f.url("private/repo.git")}, "url", "private"},
		{"web page", Source{URL: f.url("notgit/repo")}, "url", "does not answer as a git repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, log, err := cloneInto(t, tc.src)
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v (%T), want an *InputError; log:\n%s", err, err, log)
			}
			if ie.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v (field %s), want field %s and %q", err, ie.Field, tc.field, tc.want)
			}
			t.Logf("%v", err)
		})
	}
}

func TestCloneBounds(t *testing.T) {
	f := repos(t)
	b, err := New(nil, Options{MaxClones: 1, CloneTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	src := Source{URL: f.url("app.git")}

	// All clone slots taken: a clone waits, and gives up with its context.
	b.clones <- struct{}{}
	var lines []string
	sink := newLogSink(func(l string) { lines = append(lines, l) }, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = b.clone(ctx, src, filepath.Join(t.TempDir(), "src"), sink)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "waiting for a clone slot") || len(lines) == 0 || !strings.Contains(lines[0], "Waiting for one of the 1 clones") {
		t.Errorf("busy: err = %v, log %q", err, lines)
	}
	<-b.clones
	if _, err := b.clone(context.Background(), src, filepath.Join(t.TempDir(), "src"), sink); err != nil {
		t.Errorf("free slot: %v", err)
	}

	// A server that never answers: the clone times out. (A separate
	// builder: a real clone above can take longer than this timeout on a
	// loaded machine.)
	b, err = New(nil, Options{MaxClones: 1, CloneTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	began := time.Now()
	_, err = b.clone(context.Background(), Source{URL: hang.URL + "/slow.git"}, filepath.Join(t.TempDir(), "src"), sink)
	if err == nil || !strings.Contains(err.Error(), "timed out") || time.Since(began) > 5*time.Second {
		t.Errorf("hanging server: err = %v after %s", err, time.Since(began))
	}
	t.Logf("hanging server: %v", err)
}

// TestRemoteErrorPrintable: text from the repository's server reaches the
// log without the NUL go-git keeps or a terminal escape.
func TestRemoteErrorPrintable(t *testing.T) {
	cause := errors.New("remote error: access denied\x00 \x1b[31mred\x1b[0m\tend")
	err := remoteError(context.Background(), Source{URL: "https://example.com/a.git"}, cause)
	if got, want := err.Error(), "clone https://example.com/a.git: remote error: access denied [31mred[0m end"; got != want {
		t.Errorf("err = %q, want %q", got, want)
	}
	if !errors.Is(err, cause) {
		t.Error("the cause is lost")
	}
}
