package builder

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The hostile-repository suite: each test serves a repository an attacker
// could push (over git's smart HTTP, like every other test here) and builds
// it, then checks the host: the file the repository aimed at is untouched
// or unread, and the build failed naming the file or the limit. Most attacks
// are refused before Podman is called, so these builders have no Podman
// (their builds end with "no Podman runtime" once everything before the
// image build passed); TestHostileBuildWithLinks runs one real build.

// up climbs from anywhere in a checkout to the host's root directory: go-git
// checks relative link targets out as they are, so up+"etc/passwd" in a
// repository is a link to the host's /etc/passwd.
var up = strings.Repeat("../", 40)

func hostLink(file string) string { return up + strings.TrimPrefix(file, "/") }

// hostileBuild builds spec with a Builder without Podman and returns the
// error and the streamed log.
func hostileBuild(t *testing.T, opts Options, spec Spec) (error, []string) {
	t.Helper()
	if opts.TempDir == "" {
		opts.TempDir = t.TempDir()
	}
	if opts.CloneTimeout == 0 {
		opts.CloneTimeout = time.Minute
	}
	b, err := New(nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Runtime == "" {
		spec.Runtime = "python3.11-node"
	}
	var lines []string
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := b.Build(ctx, spec, "localhost/podcell-hostile:"+randHex(4), func(l string) { lines = append(lines, l) })
	if res != nil || err == nil {
		t.Fatalf("a build without Podman gave a result: %+v, %v", res, err)
	}
	return err, lines
}

// wantFileError checks that err is the *InputError for file path with want
// in its reason.
func wantFileError(t *testing.T, err error, path, want string) {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) || ie.Field != "file" || ie.Value != path || !strings.Contains(ie.Reason, want) {
		t.Fatalf("err = %v (%T), want an *InputError for file %q saying %q", err, err, path, want)
	}
	t.Logf("%v", err)
}

func wantNoPodman(t *testing.T, err error, lines []string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "no Podman runtime") {
		t.Fatalf("err = %v, want the build to get as far as Podman; log:\n%s", err, strings.Join(lines, "\n"))
	}
}

// TestHostileContainerfileLink: a repository commits .podcell.Containerfile
// as a link to a host file. podcell used to write the generated
// Containerfile through it, replacing the host file with text partly from
// the repository (the Procfile's web: line became its CMD). The host file
// must stay as it was, and the build go on.
func TestHostileContainerfileLink(t *testing.T) {
	f := repos(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("victim's own content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	url := f.serve(t, "containerfile-link", func(g *gitCmd, work string) {
		g.copyDir("testdata/pyapp", work)
		g.write(filepath.Join(work, "Procfile"), "web: echo pwned > /tmp/pwned\n")
		g.symlink(hostLink(victim), filepath.Join(work, containerfileName))
	})
	// The attack is live: the checkout's link leads to the victim.
	if dir, _, log, err := cloneInto(t, Source{URL: url}); err != nil {
		t.Fatalf("clone: %v\n%s", err, log)
	} else if got := readFile(t, filepath.Join(dir, containerfileName)); got != "victim's own content\n" {
		t.Fatalf("the checkout's %s does not lead to the victim: %q", containerfileName, got)
	}
	err, lines := hostileBuild(t, Options{}, Spec{Source: Source{URL: url}, Runtime: "python3.11-debian"})
	wantNoPodman(t, err, lines)
	if got := readFile(t, victim); got != "victim's own content\n" {
		t.Fatalf("the host file behind the repository's %s was rewritten:\n%s", containerfileName, got)
	}
}

// TestHostileBuildWithLinks builds for real (Podman) a repository with the
// Containerfile link of TestHostileContainerfileLink and links that stay
// inside the app: the host file stays as it was, the links inside reach the
// image as links (the app imports its message through one), and neither
// the generated Containerfile nor any path of the build's temporary
// directory does.
func TestHostileBuildWithLinks(t *testing.T) {
	e := newBuildEnv(t)
	e.needBase("python3.11-debian")
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("victim's own content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	url := e.f.serve(t, "build-links", func(g *gitCmd, work string) {
		g.copyDir("testdata/pyapp", work)
		g.symlink(hostLink(victim), filepath.Join(work, containerfileName))
		os.Remove(filepath.Join(work, "message.py"))
		g.write(filepath.Join(work, "lib", "message.py"), "MESSAGE = \"hello through a link\"\n")
		g.symlink("lib/message.py", filepath.Join(work, "message.py"))
		g.symlink("../lib", filepath.Join(work, "docs", "lib"))
	})
	spec := Spec{
		Source:  Source{URL: url},
		Runtime: "python3.11-debian",
		// Runs in /app after the source is copied: what reached the image.
		Build: "test -L message.py && test -L docs/lib && test -f docs/lib/message.py\n" +
			"test ! -e " + containerfileName + "\n" +
			"test ! -e " + strings.SplitN(strings.TrimPrefix(os.TempDir(), "/"), "/", 2)[0] + "\n" +
			"echo links-ok",
		Start: "python3 app.py",
	}
	tag := e.tag("hostile-links")
	res, _ := e.build(spec, tag)
	if got := readFile(t, victim); got != "victim's own content\n" {
		t.Fatalf("the host file behind the repository's %s was rewritten:\n%s", containerfileName, got)
	}
	if !strings.Contains(strings.Join(res.Log, "\n"), "links-ok") {
		t.Errorf("the build command's checks did not run")
	}
	if got := e.run(tag); got != "hello through a link" {
		t.Errorf("GET / = %q", got)
	}
}

// TestHostileManifestDevZero: package.json is a link to /dev/zero. Reading
// it would never end (and take all memory): the build must fail at once,
// naming package.json, having read nothing.
func TestHostileManifestDevZero(t *testing.T) {
	f := repos(t)
	url := f.serve(t, "dev-zero", func(g *gitCmd, work string) {
		g.copyDir("testdata/nodeapp", work)
		os.Remove(filepath.Join(work, "package.json"))
		g.symlink(hostLink("/dev/zero"), filepath.Join(work, "package.json"))
	})
	// The attack is live: the checkout's package.json is the host's /dev/zero.
	if dir, _, log, err := cloneInto(t, Source{URL: url}); err != nil {
		t.Fatalf("clone: %v\n%s", err, log)
	} else if fi, err := os.Stat(filepath.Join(dir, "package.json")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("the checkout's package.json does not lead to /dev/zero: %v %v", fi, err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err, _ := hostileBuild(t, Options{}, Spec{Source: Source{URL: url}, Runtime: "node20-debian"})
	runtime.ReadMemStats(&after)
	wantFileError(t, err, "package.json", "is a symbolic link")
	if !strings.Contains(err.Error(), "dev/zero") || !strings.Contains(err.Error(), "commit the file itself") {
		t.Errorf("the error does not say where the link points and what to do: %v", err)
	}
	// A clone of this repository allocates a few megabytes; reading
	// /dev/zero would allocate until the process dies.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("the build allocated %d MB", alloc>>20)
	}
	t.Logf("allocated %.1f MB in all during the build", float64(after.TotalAlloc-before.TotalAlloc)/1e6)
}

// TestHostileManifestSecret: package.json is a link to a JSON file of the
// host holding a secret in scripts.start. podcell used to copy it into the
// image's CMD and the build log. The build must fail naming package.json,
// and the secret must appear in neither the error nor the log.
func TestHostileManifestSecret(t *testing.T) {
	f := repos(t)
	secret := "SECRET-" + randHex(8)
	host := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(host, []byte(`{"scripts":{"start":"`+secret+`","build":"`+secret+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{"", "apps/web"} {
		t.Run("root_dir="+root, func(t *testing.T) {
			url := f.serve(t, "secret", func(g *gitCmd, work string) {
				app := filepath.Join(work, root)
				g.copyDir("testdata/nodeapp", app)
				os.Remove(filepath.Join(app, "package.json"))
				g.symlink(hostLink(host), filepath.Join(app, "package.json"))
			})
			// The attack is live: through the checkout's link, the secret.
			dir, _, log, err := cloneInto(t, Source{URL: url})
			if err != nil {
				t.Fatalf("clone: %v\n%s", err, log)
			}
			if data, err := os.ReadFile(filepath.Join(dir, root, "package.json")); err != nil || !strings.Contains(string(data), secret) {
				t.Fatalf("the checkout's package.json does not lead to the host file: %q %v", data, err)
			}
			err, lines := hostileBuild(t, Options{}, Spec{Source: Source{URL: url, RootDir: root}, Runtime: "node20-debian"})
			want := "package.json"
			if root != "" {
				want = root + "/package.json"
			}
			wantFileError(t, err, want, "is a symbolic link")
			all := err.Error() + "\n" + strings.Join(lines, "\n")
			if strings.Contains(all, secret) {
				t.Fatalf("the host file's secret is in the error or the log:\n%s", all)
			}
		})
	}
}

// TestHostileLinkedFiles: every other file podcell reads or detects, linked
// to a host file, fails the build naming it; the host file's content
// appears nowhere.
func TestHostileLinkedFiles(t *testing.T) {
	f := repos(t)
	marker := "HOSTFILE-" + randHex(8)
	host := filepath.Join(t.TempDir(), "host.txt")
	if err := os.WriteFile(host, []byte("web: echo "+marker+"\n"+marker+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file    string
		runtime string
		spec    Spec
	}{
		{file: "requirements.txt", runtime: "python3.11-debian"},
		{file: "pyproject.toml", runtime: "python3.11-debian"},
		{file: "Procfile", runtime: "python3.11-debian"},
		{file: ".containerignore", runtime: "python3.11-debian"},
		{file: ".dockerignore", runtime: "python3.11-debian"},
		{file: "package-lock.json", runtime: "node20-debian"},
		{file: "yarn.lock", runtime: "node20-debian"},
		// An explicit build command that installs from requirements.txt
		// looks for it too.
		{file: "requirements.txt", runtime: "python3.11-debian", spec: Spec{Build: "pip install -r requirements.txt", Start: "python3 app.py"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			url := f.serve(t, "linked", func(g *gitCmd, work string) {
				g.copyDir("testdata/pyapp", work)
				g.write(filepath.Join(work, "package.json"), `{"scripts":{"start":"node server.js"}}`)
				g.write(filepath.Join(work, "server.js"), "")
				os.Remove(filepath.Join(work, tc.file))
				g.symlink(hostLink(host), filepath.Join(work, tc.file))
			})
			spec := tc.spec
			spec.Source = Source{URL: url}
			spec.Runtime = tc.runtime
			err, lines := hostileBuild(t, Options{}, spec)
			wantFileError(t, err, tc.file, "is a symbolic link")
			if all := err.Error() + strings.Join(lines, "\n"); strings.Contains(all, marker) {
				t.Fatalf("the host file's content is in the error or the log:\n%s", all)
			}
		})
	}
}

// TestHostileLargeManifest: a regular package.json over the cap on what
// podcell reads (it compresses to nothing in the pack) is refused.
func TestHostileLargeManifest(t *testing.T) {
	f := repos(t)
	url := f.serve(t, "large", func(g *gitCmd, work string) {
		g.copyDir("testdata/nodeapp", work)
		g.write(filepath.Join(work, "package.json"), `{"description":"`+strings.Repeat("x", maxRepoFileBytes)+`","scripts":{"start":"node server.js"}}`)
	})
	err, _ := hostileBuild(t, Options{}, Spec{Source: Source{URL: url}, Runtime: "node20-debian"})
	wantFileError(t, err, "package.json", "is larger than 1 MiB")
}

// TestHostileContextLinks: links in the build context that lead out of it
// are refused, naming them, before the build; links that stay inside it
// (real apps have them) are kept.
func TestHostileContextLinks(t *testing.T) {
	f := repos(t)
	for _, tc := range []struct {
		name  string
		root  string
		setup func(g *gitCmd, app string)
		path  string // the path refused ("": none)
		want  string
	}{
		{
			name:  "relative link out of the checkout",
			setup: func(g *gitCmd, app string) { g.symlink("../../../../../../../../etc", filepath.Join(app, "data")) },
			path:  "data", want: "leads out of the build context",
		},
		{
			// go-git checks an absolute target out as a path inside the
			// checkout; still absolute, still refused.
			name:  "absolute link",
			setup: func(g *gitCmd, app string) { g.symlink("/etc/passwd", filepath.Join(app, "conf", "passwd")) },
			path:  "conf/passwd", want: "an absolute path",
		},
		{
			// Each link looks inside on its own: s is "../.." from a/b
			// (the root), and t climbs three levels from a/b/s, which is
			// the root itself, not a/b.
			name: "chain of links",
			setup: func(g *gitCmd, app string) {
				g.write(filepath.Join(app, "a", "b", "keep"), "")
				g.symlink("../..", filepath.Join(app, "a", "b", "s"))
				g.symlink("a/b/s/../../..", filepath.Join(app, "t"))
			},
			path: "t", want: "leads out of the build context",
		},
		{
			name: "link out of root_dir into the rest of the repository",
			root: "apps/web",
			setup: func(g *gitCmd, app string) {
				g.write(filepath.Join(app, "..", "..", "lib", "shared.py"), "")
				g.symlink("../../lib", filepath.Join(app, "shared"))
			},
			path: "apps/web/shared", want: "leads out of the build context",
		},
		{
			name: "links inside are kept",
			setup: func(g *gitCmd, app string) {
				g.write(filepath.Join(app, "docs", "readme.txt"), "inside\n")
				g.symlink("docs/readme.txt", filepath.Join(app, "readme"))
				g.symlink("../docs", filepath.Join(app, "sub", "docs"))
				g.symlink("missing", filepath.Join(app, "dangling"))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := f.serve(t, "context-links", func(g *gitCmd, work string) {
				app := filepath.Join(work, tc.root)
				g.copyDir("testdata/pyapp", app)
				tc.setup(g, app)
			})
			err, lines := hostileBuild(t, Options{}, Spec{Source: Source{URL: url, RootDir: tc.root}, Runtime: "python3.11-debian"})
			if tc.path == "" {
				wantNoPodman(t, err, lines)
				return
			}
			wantFileError(t, err, tc.path, tc.want)
		})
	}
}

// TestHostileTreeSize: a pack of a few kilobytes whose commit holds 24 MiB
// of zeros is refused before the checkout writes any of it, naming the
// limit.
func TestHostileTreeSize(t *testing.T) {
	f := repos(t)
	url := f.serve(t, "zeros", func(g *gitCmd, work string) {
		g.copyDir("testdata/pyapp", work)
		z, err := os.Create(filepath.Join(work, "zeros.bin"))
		if err == nil {
			err = z.Truncate(24 << 20)
			z.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	dir, _, log, err := cloneWithLimits(t, Source{URL: url}, repoLimits{bytes: 8 << 20})
	var ie *InputError
	if !errors.As(err, &ie) || ie.Field != "url" || !strings.Contains(err.Error(), "add up to more than 8 MiB (reached at zeros.bin)") ||
		!strings.Contains(err.Error(), "raise podcell's global option max_repo_size (max_repo_mb in JSON), now 8 MiB") {
		t.Fatalf("err = %v, want the size limit; log:\n%s", err, log)
	}
	t.Logf("%v", err)
	if _, err := os.Lstat(filepath.Join(dir, "zeros.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("zeros.bin was checked out: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, ".git")); err != nil || !fi.IsDir() {
		t.Errorf("no .git: the clone did not get as far as the size check: %v", err)
	}
	// Through a Builder, with the limit as an option.
	err, _ = hostileBuild(t, Options{MaxRepoBytes: 8 << 20}, Spec{Source: Source{URL: url}, Runtime: "python3.11-debian"})
	if !errors.As(err, &ie) || ie.Field != "url" || !strings.Contains(err.Error(), "max_repo_size (max_repo_mb in JSON), now 8 MiB") {
		t.Fatalf("build: err = %v, want the size limit", err)
	}
	// Under the default limit the same repository builds.
	err, lines := hostileBuild(t, Options{}, Spec{Source: Source{URL: url}, Runtime: "python3.11-debian"})
	wantNoPodman(t, err, lines)
}

// TestHostileGitBomb: a commit whose tree names one subtree ten times at
// each of seven levels (ten million files, from a pack of a few kilobytes)
// is refused by the default file limit before anything is checked out.
func TestHostileGitBomb(t *testing.T) {
	f := repos(t)
	url := f.serve(t, "bomb", func(g *gitCmd, work string) {
		blob := gitStdin(g, work, "hello\n", "hash-object", "-w", "--stdin")
		obj, mode := blob, "100644 blob"
		for level := 0; level < 7; level++ {
			var tree strings.Builder
			for i := 0; i < 10; i++ {
				fmt.Fprintf(&tree, "%s %s\tf%d\n", mode, obj, i)
			}
			obj, mode = gitStdin(g, work, tree.String(), "mktree"), "040000 tree"
		}
		commit := g.out(work, "commit-tree", obj, "-m", "bomb")
		g.run(work, "update-ref", "refs/heads/main", commit)
	})
	dir, _, log, err := cloneWithLimits(t, Source{URL: url}, repoLimits{bytes: DefaultMaxRepoBytes, files: DefaultMaxRepoFiles})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "more than 200000 files") || !strings.Contains(err.Error(), "raise podcell's global option max_repo_files, now 200000") {
		t.Fatalf("err = %v, want the file limit; log:\n%s", err, log)
	}
	t.Logf("%v", err)
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the checkout holds %d entries, want .git alone", len(entries))
	}
}

// gitStdin runs git with input on its standard input and returns its output.
func gitStdin(g *gitCmd, dir, input string, args ...string) string {
	if g.err != nil {
		return ""
	}
	cmd := execGit(g, dir, args...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.err = fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestHostileReceiveLimit: the bytes a server sends count while they
// arrive. A repository of incompressible data over the limit stops the
// clone during the fetch; a server that lists refs without end stops a
// clone, and Resolve (what auto-deploy polls), at the limit instead of
// filling memory until the timeout.
func TestHostileReceiveLimit(t *testing.T) {
	f := repos(t)
	url := f.serve(t, "random", func(g *gitCmd, work string) {
		g.copyDir("testdata/pyapp", work)
		data := make([]byte, 4<<20)
		rand.Read(data)
		g.write(filepath.Join(work, "random.bin"), string(data))
	})
	_, _, log, err := cloneWithLimits(t, Source{URL: url}, repoLimits{bytes: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "its server sent more than 1 MiB") || !strings.Contains(err.Error(), "max_repo_size (max_repo_mb in JSON), now 1 MiB") {
		t.Fatalf("err = %v, want the limit on bytes received; log:\n%s", err, log)
	}
	t.Logf("%v", err)

	var sent atomic.Int64
	endless := f.handle(t, "endless", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/info/refs") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		pkt := func(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }
		sha := strings.Repeat("ab", 20)
		head := pkt("# service=git-upload-pack\n") + "0000" + pkt(sha+" HEAD\x00multi_ack side-band-64k ofs-delta shallow\n")
		n, err := io.WriteString(w, head)
		sent.Add(int64(n))
		for i := 0; err == nil; i++ {
			n, err = io.WriteString(w, pkt(fmt.Sprintf("%s refs/heads/branch-%d\n", sha, i)))
			sent.Add(int64(n))
		}
	}))
	_, _, _, err = cloneWithLimits(t, Source{URL: endless}, repoLimits{bytes: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "its server sent more than 1 MiB") {
		t.Fatalf("endless refs: err = %v, want the limit on bytes received", err)
	}
	t.Logf("endless refs: %v (the server wrote %.1f MB before the client hung up)", err, float64(sent.Load())/1e6)

	b, err := New(nil, Options{MaxRepoBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = b.Resolve(ctx, Source{URL: endless})
	if err == nil || !strings.Contains(err.Error(), "more than 1 MiB listing its refs") || !strings.Contains(err.Error(), "max_repo_size (max_repo_mb in JSON), now 1 MiB") {
		t.Fatalf("resolve endless refs: err = %v, want the limit on bytes received", err)
	}
	t.Logf("resolve: %v", err)
	// The limit belongs to the clone: the next one under no limit is fine.
	if _, _, _, err := cloneInto(t, Source{URL: f.url("app.git")}); err != nil {
		t.Fatalf("a clone after the limited ones: %v", err)
	}
}

// TestReadRegular: what a git checkout cannot hold but a host can: opening
// a FIFO or a device does not block or read it.
func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{fifo, "/dev/zero"} {
		_, err := readRegular(file, 1<<10)
		var ne *notRegularError
		if !errors.As(err, &ne) {
			t.Errorf("%s: err = %v, want not a regular file", file, err)
		}
	}
	// A link is not followed, even to a regular file.
	os.WriteFile(filepath.Join(dir, "real"), []byte("x"), 0o644)
	os.Symlink("real", filepath.Join(dir, "link"))
	if _, err := readRegular(filepath.Join(dir, "link"), 1<<10); err == nil {
		t.Errorf("read through a link")
	}
	if data, err := readRegular(filepath.Join(dir, "real"), 1); err != nil || string(data) != "x" {
		t.Errorf("real: %q %v", data, err)
	}

	// In an app's directory, a special file is refused from the context.
	app := appDir(t, map[string]string{"app.py": ""})
	if err := syscall.Mkfifo(filepath.Join(app, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := buildContext(app, "web", filepath.Join(t.TempDir(), "ctx"), map[string][]byte{containerfileName: []byte("FROM x\n")})
	wantFileError(t, err, "web/pipe", "is a named pipe")
}
