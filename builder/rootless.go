package builder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/images"
)

// Builds as an unprivileged user. Rootful Podman 4.3 cannot build in a
// user namespace here (with idmapping every RUN after the first fails with
// "permission denied": the committed layer keeps the shifted owners, see
// docs/configuration.md), so each build runs the podman CLI rootless, as
// the build user (Options.BuildUser, by default the podcell user that
// scripts/setup-rootless.sh makes): a step's root is that user's uid in a
// user namespace, never host root. The CLI runs in a cgroup per build that
// podcell makes and enters it before it runs anything, so the build's
// every process (podman, runc, the steps) is held to the build's memory,
// CPU and pids limits, which rootless Podman cannot set on cgroup v1, and
// the timeout kills them all. The built image then moves into the rootful
// store where instances run; the build user's store keeps it too, as the
// layer cache of the next build (the image collection removes it from both
// stores, see Images and RemoveImage).

// DefaultBuildUser is the host user builds run as unless Options.BuildUser
// names another.
const DefaultBuildUser = "podcell"

// RootBuildUser as Options.BuildUser builds through the rootful Podman API
// as host root, as podcell did before builds ran as a user: unsafe, a
// build step's root is then host root.
const RootBuildUser = "root"

// minSubIDs is how many subordinate uids and gids the build user needs:
// images carry files of uids up to 65534 (nobody).
const minSubIDs = 65536

// buildUser is the unprivileged host user whose rootless Podman builds.
type buildUser struct {
	name     string
	uid, gid uint32
	home     string
	podman   string // the podman binary
}

// lookupBuildUser checks that name can build rootless: an existing user,
// not uid 0, with a home and enough subordinate ids, and a podman binary.
func lookupBuildUser(name string) (*buildUser, error) {
	fix := "run make setup (scripts/setup-rootless.sh makes the podcell user with its subordinate ids), or name an unprivileged user with " +
		strconv.Itoa(minSubIDs) + " subordinate uids and gids in /etc/subuid and /etc/subgid (build_user root builds as host root: unsafe)"
	fail := func(reason string) error {
		return &InputError{Field: "build_user", Value: name, Reason: reason + ": " + fix}
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fail("is not a user of this host")
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fail("has a uid or gid that is not a number")
	}
	if uid == 0 {
		return nil, fail("has uid 0, so a build step's root would be host root")
	}
	if fi, err := os.Stat(u.HomeDir); err != nil || !fi.IsDir() || u.HomeDir == "/" {
		return nil, fail(fmt.Sprintf("has no home directory (%q); rootless Podman keeps its images there", u.HomeDir))
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		if n := subordinateIDs(f, name, u.Uid); n < minSubIDs {
			return nil, fail(fmt.Sprintf("has %d subordinate ids in %s, needs %d", n, f, minSubIDs))
		}
	}
	podman, err := exec.LookPath("podman")
	if err != nil {
		return nil, fail("cannot build: the podman command is not on PATH")
	}
	return &buildUser{name: name, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir, podman: podman}, nil
}

// subordinateIDs counts the ids file (/etc/subuid or /etc/subgid) gives
// the user, named by name or uid.
func subordinateIDs(file, name, uid string) int64 {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(strings.TrimSpace(l), ":")
		if len(f) != 3 || (f[0] != name && f[0] != uid) {
			continue
		}
		if c, err := strconv.ParseInt(f[2], 10, 64); err == nil && c > 0 {
			n += c
		}
	}
	return n
}

func (u *buildUser) runDir() string { return "/run/user/" + strconv.FormatUint(uint64(u.uid), 10) }

// command is podman with args, run as the user in its home with the
// environment a login would give it (rootless Podman finds its storage
// and runtime directory from HOME and XDG_RUNTIME_DIR).
func (u *buildUser) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, u.podman, args...)
	cmd.Dir = u.home
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + u.home, "USER=" + u.name, "LOGNAME=" + u.name,
		"XDG_RUNTIME_DIR=" + u.runDir(),
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Groups: none of podcell's (root's) supplementary groups.
		Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}},
	}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// output runs podman with args as the user and returns its stdout; a
// failure quotes the end of its stderr.
func (u *buildUser) output(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := u.command(ctx, args...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		return out, fmt.Errorf("podman %s as %s: %w: %s", args[0], u.name, err, msg)
	}
	return out, nil
}

// prepare makes what rootless Podman needs before a build: the user's
// runtime directory (systemd-logind makes it at a login; podcell's user
// never logs in) and its pause process. The pause process holds the
// user's namespace for every later podman command; whichever command
// finds none starts it, so a build would start it inside the build's
// cgroup, where it would stay (and keep the cgroup from being removed)
// or be killed with the build.
func (u *buildUser) prepare(ctx context.Context) error {
	dir := u.runDir()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err == nil {
		if err := os.Chown(dir, int(u.uid), int(u.gid)); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrExist) {
		return err
	}
	if data, err := os.ReadFile(filepath.Join(dir, "libpod", "tmp", "pause.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 && syscall.Kill(pid, 0) == nil {
			return nil
		}
	}
	_, err := u.output(ctx, nil, "unshare", "true")
	return err
}

// shareContext gives the build user the build context, and nothing else:
// tmp (the build's own directory) lets it pass but not list, the checkout
// beside the context stays podcell's alone, and the context tree becomes
// the user's (its files are hard links to the checkout's, which the build
// no longer reads).
func (u *buildUser) shareContext(tmp, checkout, ctxDir string) error {
	if err := os.Chmod(checkout, 0o700); err != nil {
		return err
	}
	if err := filepath.WalkDir(ctxDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.uid), int(u.gid))
	}); err != nil {
		return err
	}
	if err := os.Chmod(ctxDir, 0o700); err != nil {
		return err
	}
	return os.Chmod(tmp, 0o711)
}

// rootlessImage is one image as `podman images --format json` lists it.
type rootlessImage struct {
	ID       string            `json:"Id"`
	ParentID string            `json:"ParentId"`
	Names    []string          `json:"Names"`
	History  []string          `json:"History"`
	Labels   map[string]string `json:"Labels"`
	Size     int64             `json:"Size"`
	Created  int64             `json:"Created"`
}

// images lists the user's images, intermediate build images included.
func (u *buildUser) images(ctx context.Context) ([]Image, error) {
	out, err := u.output(ctx, nil, "images", "--all", "--format", "json")
	if err != nil {
		return nil, err
	}
	var list []rootlessImage
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("podman images as %s: %w", u.name, err)
	}
	imgs := make([]Image, 0, len(list))
	for _, s := range list {
		imgs = append(imgs, Image{ID: s.ID, Parent: s.ParentID, Names: s.Names, NamesHistory: s.History, Labels: s.Labels,
			Size: s.Size, Created: time.Unix(s.Created, 0)})
	}
	return imgs, nil
}

// imagesInUse are the IDs of the images the user's containers use.
func (u *buildUser) imagesInUse(ctx context.Context) (map[string]bool, error) {
	out, err := u.output(ctx, nil, "ps", "--all", "--external", "--format", "{{.ImageID}}")
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, id := range strings.Fields(string(out)) {
		used[id] = true
	}
	return used, nil
}

// removeImage removes an image by ID from the user's store, never by
// force, with its parents left without name and child. One not there is
// no error.
func (u *buildUser) removeImage(ctx context.Context, id string) ([]string, error) {
	out, err := u.output(ctx, nil, "rmi", "--ignore", id)
	var deleted []string
	for _, l := range strings.Split(string(out), "\n") {
		if d, ok := strings.CutPrefix(strings.TrimSpace(l), "Deleted: "); ok {
			deleted = append(deleted, d)
		}
	}
	return deleted, err
}

// imageID is the ID of ref in the user's store ("" if it has none).
func (u *buildUser) imageID(ctx context.Context, ref string) string {
	out, err := u.output(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// copyBase copies the base image ref from the rootful store into the
// build user's once per image ID, so that a build FROM a local runtime
// image (make base-images makes them in the rootful store) finds it. An
// image the rootful store lacks is the build's to pull.
func (b *Builder) copyBase(ctx context.Context, ref string, log *logSink) error {
	img, err := images.GetImage(b.rt.BindingsContext(ctx), ref, nil)
	if err != nil {
		if ok, err := images.Exists(b.rt.BindingsContext(ctx), ref, nil); err == nil && !ok {
			return nil
		}
		return fmt.Errorf("base image %s: %w", ref, err)
	}
	b.baseMu.Lock()
	defer b.baseMu.Unlock()
	if b.bases[img.ID] || b.user.imageID(ctx, ref) == img.ID {
		b.bases[img.ID] = true
		return nil
	}
	log.printf("==> Copying the base image %s (%s) into the store of the build user %s", ref, shortID(img.ID), b.user.name)
	log.flush()
	began := time.Now()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(images.Export(b.rt.BindingsContext(ctx), []string{ref}, pw, nil))
	}()
	_, err = b.user.output(ctx, pr, "load")
	pr.CloseWithError(errors.New("podman load ended"))
	if err != nil {
		return fmt.Errorf("copy the base image %s to the build user %s: %w", ref, b.user.name, err)
	}
	if got := b.user.imageID(ctx, ref); got != img.ID {
		return fmt.Errorf("copy the base image %s to the build user %s: it has ID %s there, not %s", ref, b.user.name, shortID(got), shortID(img.ID))
	}
	b.bases[img.ID] = true
	log.printf("==> Copied the base image in %s", time.Since(began).Round(time.Millisecond))
	return nil
}

// moveImage streams the image built as the user (by ID, named tag) into
// the rootful store through the API (podman save | image load, no file in
// between). Image IDs are the config's digest, the same in both stores.
func (b *Builder) moveImage(ctx context.Context, id, tag string) error {
	cmd := b.user.command(ctx, "save", "--format", "docker-archive", tag)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("podman save as %s: %w", b.user.name, err)
	}
	report, lerr := images.Load(b.rt.BindingsContext(ctx), bufio.NewReaderSize(out, 1<<20))
	io.Copy(io.Discard, out) // let save end if the load stopped reading
	serr := cmd.Wait()
	if serr != nil {
		return fmt.Errorf("podman save as %s: %w: %s", b.user.name, serr, strings.TrimSpace(stderr.String()))
	}
	if lerr != nil {
		return fmt.Errorf("load the image into the rootful store: %w", lerr)
	}
	got, err := images.GetImage(b.rt.BindingsContext(ctx), tag, nil)
	if err != nil {
		return fmt.Errorf("the image moved to the rootful store: %w (loaded %v)", err, report)
	}
	if got.ID != id {
		return fmt.Errorf("the image moved to the rootful store as %s has ID %s, not %s", tag, shortID(got.ID), shortID(id))
	}
	return nil
}

// buildAsUser runs the image build as the build user: the podman CLI,
// rootless, in the build's cgroup (see userCgroup), its output streamed
// into the log. A build that succeeds is then moved into the rootful store.
func (b *Builder) buildAsUser(ctx context.Context, lim Limits, tmp, checkout, ctxDir, cf, base, tag string, excludes []string, log *logSink) imageBuild {
	u := b.user
	fail := func(err error) imageBuild { return imageBuild{err: fmt.Errorf("builder: %w", err)} }
	if err := u.prepare(ctx); err != nil {
		return fail(fmt.Errorf("prepare rootless Podman of the build user %s: %w", u.name, err))
	}
	if err := b.copyBase(ctx, base, log); err != nil {
		return fail(err)
	}
	// What the CLI reads besides the context and writes: the ignore
	// patterns and the built image's ID, in a directory of the user's.
	out := filepath.Join(tmp, "out")
	ignore, iid := filepath.Join(out, "ignore"), filepath.Join(out, "iid")
	if err := os.Mkdir(out, 0o700); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(ignore, []byte(strings.Join(excludes, "\n")+"\n"), 0o600); err != nil {
		return fail(err)
	}
	owned := []string{out, ignore}
	var secrets []string
	if b.ca != nil {
		// Mounted into the install and build steps as a secret (BuildCA).
		ca := filepath.Join(out, "build-ca.pem")
		if err := os.WriteFile(ca, b.ca, 0o600); err != nil {
			return fail(err)
		}
		owned = append(owned, ca)
		secrets = append(secrets, "--secret", "id="+caSecretID+",src="+ca)
	}
	for _, p := range owned {
		if err := os.Chown(p, int(u.uid), int(u.gid)); err != nil {
			return fail(err)
		}
	}
	if err := u.shareContext(tmp, checkout, ctxDir); err != nil {
		return fail(fmt.Errorf("give the build context to the build user %s: %w", u.name, err))
	}

	cg, err := newUserCgroup(lim)
	if err != nil {
		return fail(err)
	}
	defer cg.remove()
	b.userMu.Lock()
	b.userRunning++
	b.userMu.Unlock()
	defer func() {
		b.userMu.Lock()
		defer b.userMu.Unlock()
		if b.userRunning--; b.userRunning == 0 && b.userDirty {
			b.userDirty = false
			rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b.removeBuildContainers(rctx, log)
		}
	}()
	args := []string{"build", "--file", cf, "--tag", tag, "--iidfile", iid, "--ignorefile", ignore,
		// Without an explicit format the cache finds no layer (as through the API).
		"--format", "oci", "--layers", "--rm", "--force-rm", "--pull=missing",
		// RUN steps keep only what package managers need.
		"--cap-drop", "ALL", "--cap-add", strings.Join(buildCaps, ",")}
	if cg.v2 {
		// On cgroup v2 with delegation rootless Podman sets them on each
		// step too; on v1 it would only warn that it ignores them.
		args = append(args, "--memory", strconv.Itoa(lim.MemoryMB)+"m", "--memory-swap", strconv.Itoa(lim.MemoryMB)+"m",
			"--cpu-period", "100000", "--cpu-quota", strconv.FormatInt(int64(lim.CPUs*100000), 10))
	}
	args = append(append(args, secrets...), ctxDir)
	// The CLI starts behind a gate: sh waits on fd 3 until podcell has
	// moved it into the cgroup, then becomes podman. podcell closing the
	// gate without a word ends it before podman runs.
	cmd := u.command(context.Background(), args...)
	cmd.Args = append([]string{"/bin/sh", "-c", `read -r go <&3 && exec "$0" "$@"`}, cmd.Args...)
	cmd.Path = "/bin/sh"
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	cmd.ExtraFiles = []*os.File{gateR}
	cmd.Stdout, cmd.Stderr = log, log
	log.printf("==> Build limits: memory %s, %g CPU, %d processes, %s; capabilities %s; as user %s (uid %d) in a user namespace",
		formatMB(lim.MemoryMB), lim.CPUs, lim.Pids, lim.Timeout, strings.Join(buildCaps, " "), u.name, u.uid)
	if err := cmd.Start(); err != nil {
		gateR.Close()
		gateW.Close()
		return fail(fmt.Errorf("start podman build as %s: %w", u.name, err))
	}
	gateR.Close()
	if err := cg.enter(cmd.Process.Pid); err != nil {
		gateW.Close()
		cmd.Wait()
		return fail(err)
	}
	gateW.Write([]byte("go\n"))
	gateW.Close()

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	bctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	var res imageBuild
	stopped := false // we ended podman; otherwise its own error says why it ended
	select {
	case err = <-done:
	case <-bctx.Done():
		stopped = true
		cg.kill(time.Minute)
		err = <-done
		log.flush()
		log.printf("==> Stopped the build's processes")
		if bctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			res.timedOut = true
		}
		b.userMu.Lock()
		b.userDirty = true
		b.userMu.Unlock()
	}
	log.flush()
	res.pidsHit, res.oomKilled = cg.hitPids(), cg.oomKilled()
	if left := cg.procs(); len(left) > 0 {
		// Nothing of a build outlives it (a step's daemon in the background).
		cg.kill(10 * time.Second)
	}
	if err != nil {
		// Not bctx.Err(): podman may end on its own (a step failed) just as
		// the deadline passes, and then its error is the one that says why.
		if stopped {
			res.err = bctx.Err()
		} else {
			res.err = podmanError(log, err)
		}
		return res
	}
	id, err := os.ReadFile(iid)
	if res.id = strings.TrimPrefix(strings.TrimSpace(string(id)), "sha256:"); err != nil || res.id == "" {
		res.err = fmt.Errorf("the build ended without an image ID (%v)", err)
		return res
	}
	began := time.Now()
	mctx, mcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer mcancel()
	if err := b.moveImage(mctx, res.id, tag); err != nil {
		res.err = fmt.Errorf("builder: %w", err)
		return res
	}
	log.printf("==> Moved the image to the rootful store in %s", time.Since(began).Round(time.Millisecond))
	return res
}

// podmanError is the error line podman printed last ("Error: building at
// STEP ...: exit status 137"), or err. podman prints it after the build's
// every step has ended, so no step's output comes after it.
func podmanError(log *logSink, err error) error {
	lines, _ := log.snapshot()
	for i := len(lines) - 1; i >= 0 && i >= len(lines)-20; i-- {
		if msg, ok := strings.CutPrefix(lines[i], "Error: "); ok {
			// It may span lines: a RUN step's command has newlines.
			return errors.New(strings.Join(append([]string{msg}, lines[i+1:]...), "\n"))
		}
	}
	return err
}

// removeBuildContainers removes the working containers killed builds
// left in the build user's store (buildah's, which podman lists with
// --external only, state "Storage"): a build's own removal of them
// (--force-rm) dies with it. They cannot be told apart from those of a
// build still running, so this runs only when no build as the user runs,
// holding b.userMu so that none starts meanwhile.
func (b *Builder) removeBuildContainers(ctx context.Context, log *logSink) {
	out, err := b.user.output(ctx, nil, "ps", "--all", "--external", "--format", "{{.ID}} {{.Status}}")
	if err != nil {
		log.printf("==> Warning: cannot list the working containers killed builds left: %v", err)
		return
	}
	var ids []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[1] == "Storage" {
			ids = append(ids, f[0])
		}
	}
	if len(ids) == 0 {
		return
	}
	// --force: a killed build's container stays mounted. Not --ignore:
	// podman 4.3 then skips containers that are only in storage.
	if _, err := b.user.output(ctx, nil, append([]string{"rm", "--force"}, ids...)...); err != nil {
		log.printf("==> Warning: cannot remove the working containers killed builds left: %v", err)
		return
	}
	log.printf("==> Removed %d working container(s) of stopped builds", len(ids))
}
