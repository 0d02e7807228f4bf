// Command disk measures the disk use of successive deploys of one git
// service through Caddy: it makes -deploys builds of a new commit each (a
// source-only change, as most pushes are) and records Podman's image count,
// `podman system df` and the size of Podman's storage directory before the
// first, every -every deploys, after the last once the image collection has
// settled, and after the service is deleted through the admin API.
//
// Builds run rootless as the build user (-build-user, podcell's default
// build_user), in that user's own image store, and each built image then
// moves into the rootful store: both stores are counted (images, the
// service's images and the size of each storage directory). With
// -build-user root builds run through the rootful API as before build_user
// existed, and only the rootful store is counted.
//
// It runs one Caddy per keep_images value of -keep (e.g. "3,49": the
// default window, and one wider than the deploys, which removes about
// nothing), each with a fresh service. Nothing else may use Podman meanwhile
// (the figures are deltas of the whole storage): hold the shared Podman lock.
//
// It prints a markdown report on stdout (progress on stderr) and, with
// -json FILE, writes every sample as JSON. It needs git (with
// git-http-backend), the podman CLI, du, and the base image named by
// -python-base.
//
//	GOFLAGS=-tags=containers_image_openpgp CGO_ENABLED=0 go run ./benchmarks/disk -deploys 50 -keep 3,49
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	mach "github.com/podcell/podcell/benchmarks/machine"
)

var (
	flagDeploys    = flag.Int("deploys", 50, "deploys (builds of a new commit) per keep_images value")
	flagEvery      = flag.Int("every", 10, "sample disk use every this many deploys")
	flagKeep       = flag.String("keep", "3,49", "keep_images values to run, comma-separated")
	flagJSON       = flag.String("json", "", "also write the results as JSON to this file")
	flagPythonBase = flag.String("python-base", "localhost/podcell-runtime:python3.11-debian", "base image of runtime python3.11-debian")
	flagAssetKB    = flag.Int("asset-kb", 1024, "size of a random file (a bundled asset) each commit rewrites, in KiB")
	flagCaddy      = flag.String("caddy", "", "Caddy binary (default: build ./cmd/caddy into a temporary directory)")
	flagBuildUser  = flag.String("build-user", "podcell", "build_user of the Caddy under test, whose rootless image store is measured too (root: builds as root, one store)")
)

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "disk: "+format+"\n", args...) }

const app = `import http.server, os
MSG = open(os.path.join(os.path.dirname(__file__), "message.txt")).read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(MSG.encode())
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
`

// Sample is the disk use at one point.
type Sample struct {
	Point         string `json:"point"`
	Deploys       int    `json:"deploys"`
	Images        int    `json:"images"`         // podman images -a
	ServiceImages int    `json:"service_images"` // images named (now or before) localhost/podcell-build/<service>
	StorageBytes  int64  `json:"storage_bytes"`  // du -sxb of Podman's graph root
	SystemDF      string `json:"system_df"`      // podman system df's Images row: total active size reclaimable
	// The build user's store (zero with -build-user root).
	UserImages        int    `json:"user_images"`         // podman images -a as the build user
	UserServiceImages int    `json:"user_service_images"` // of those, named (now or before) for the service
	UserStorageBytes  int64  `json:"user_storage_bytes"`  // du -sxb of the build user's graph root
	UserSystemDF      string `json:"user_system_df"`
}

// TotalBytes is the size of both stores.
func (s Sample) TotalBytes() int64 { return s.StorageBytes + s.UserStorageBytes }

// Run is one keep_images value's series.
type Run struct {
	Keep       int       `json:"keep_images"`
	Service    string    `json:"service"`
	Samples    []Sample  `json:"samples"`
	BuildSecs  []float64 `json:"build_seconds"`
	Removed    int       `json:"images_removed_logged"`
	FreedBytes int64     `json:"freed_bytes_logged"`
	Duration   string    `json:"duration"`
}

type Report struct {
	Date       string `json:"date"`
	Machine    string `json:"machine"`
	GraphRoot  string `json:"graph_root"`
	BuildUser  string `json:"build_user"`
	UserRoot   string `json:"user_graph_root,omitempty"` // the build user's graph root
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
	Deploys    int    `json:"deploys"`
	Runs       []Run  `json:"runs"`
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		logf("%v", err)
		os.Exit(1)
	}
}

func sh(name string, args ...string) (string, error) { return output(exec.Command(name, args...)) }

func output(cmd *exec.Cmd) (string, error) {
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func run() error {
	var keeps []int
	for _, f := range strings.Split(*flagKeep, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return fmt.Errorf("-keep %q: want whole numbers >= 0", *flagKeep)
		}
		keeps = append(keeps, n)
	}
	if _, err := sh("podman", "image", "exists", *flagPythonBase); err != nil {
		return fmt.Errorf("base image %s is missing (make base-images): %v", *flagPythonBase, err)
	}
	tmp, err := os.MkdirTemp("", "podcell-bench-disk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := *flagCaddy
	if bin == "" {
		bin = filepath.Join(tmp, "caddy")
		logf("building Caddy")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/caddy").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	}
	root, err := sh("podman", "info", "--format", "{{.Store.GraphRoot}}")
	if err != nil {
		return err
	}
	var bu *podmanUser
	if *flagBuildUser != "root" {
		if bu, err = lookupUser(*flagBuildUser); err != nil {
			return err
		}
	}
	podmanVersion, _ := sh("podman", "version", "--format", "{{.Server.Version}}")
	rep := Report{Date: time.Now().UTC().Format(time.RFC3339), GraphRoot: root, LoadBefore: mach.Loadavg(), Deploys: *flagDeploys,
		BuildUser: *flagBuildUser,
		Machine: fmt.Sprintf("%s, kernel %s, %d CPUs, podman %s, %s", mach.OSName(), mach.ReadTrim("/proc/sys/kernel/osrelease"),
			runtime.NumCPU(), podmanVersion, runtime.Version())}
	if bu != nil {
		rep.UserRoot = bu.root
	}
	for _, keep := range keeps {
		r, err := runOne(bin, filepath.Join(tmp, fmt.Sprintf("keep%d", keep)), root, bu, keep)
		rep.Runs = append(rep.Runs, r)
		if err != nil {
			return fmt.Errorf("keep_images %d: %w", keep, err)
		}
	}
	rep.LoadAfter = mach.Loadavg()
	if *flagJSON != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*flagJSON, b, 0o644); err != nil {
			return err
		}
	}
	fmt.Print(rep.markdown())
	return nil
}

type podmanImage struct {
	Names   []string `json:"Names"`
	History []string `json:"History"`
}

// podmanUser runs the podman CLI as the build user, as podcell's builder
// does (its HOME and runtime directory locate its store).
type podmanUser struct {
	name     string
	uid, gid uint32
	home     string
	root     string // its graph root
}

func lookupUser(name string) (*podmanUser, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("-build-user %s: %v (make setup makes the podcell user; -build-user root measures root builds)", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	pu := &podmanUser{name: name, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}
	if pu.root, err = pu.sh("info", "--format", "{{.Store.GraphRoot}}"); err != nil {
		return nil, err
	}
	return pu, nil
}

// sh runs podman with args as the user.
func (u *podmanUser) sh(args ...string) (string, error) {
	cmd := exec.Command("podman", args...)
	cmd.Dir = u.home
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + u.home, "USER=" + u.name, "LOGNAME=" + u.name, "XDG_RUNTIME_DIR=/run/user/" + strconv.FormatUint(uint64(u.uid), 10)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}}
	return output(cmd)
}

// images counts a store's images (`podman images -a`) and those of them
// named, now or before, for service.
func images(podman func(...string) (string, error), service string) (all, of int, err error) {
	var list []podmanImage
	for range 5 { // a listing fails if an image goes meanwhile
		var out string
		if out, err = podman("images", "-a", "--format", "json"); err == nil {
			if err = json.Unmarshal([]byte(out), &list); err == nil {
				break
			}
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		return 0, 0, err
	}
	for _, img := range list {
		for _, n := range append(img.Names, img.History...) {
			if strings.HasPrefix(n, "localhost/podcell-build/"+service+":") {
				of++
				break
			}
		}
	}
	return len(list), of, nil
}

// du is the size of dir in bytes. du fails when a file goes while it
// walks (Podman cleaning up after another client): it tries again.
func du(dir string) (n int64, err error) {
	for range 5 {
		var out string
		if out, err = sh("du", "-sxb", dir); err == nil {
			return strconv.ParseInt(strings.Fields(out)[0], 10, 64)
		}
		time.Sleep(time.Second)
	}
	return 0, err
}

const dfFormat = "{{if eq .Type \"Images\"}}{{.Total}} images, {{.Active}} active, {{.Size}}, reclaimable {{.Reclaimable}}{{end}}"

func measure(point string, deploys int, root string, bu *podmanUser, service string) (s Sample, err error) {
	s = Sample{Point: point, Deploys: deploys}
	rootful := func(args ...string) (string, error) { return sh("podman", args...) }
	if s.Images, s.ServiceImages, err = images(rootful, service); err != nil {
		return s, err
	}
	if s.StorageBytes, err = du(root); err != nil {
		return s, err
	}
	if s.SystemDF, err = sh("podman", "system", "df", "--format", dfFormat); err != nil {
		return s, err
	}
	s.SystemDF = strings.TrimSpace(s.SystemDF)
	logf("%s: rootful %d images (%d of the service), storage %d bytes, df %s", point, s.Images, s.ServiceImages, s.StorageBytes, s.SystemDF)
	if bu == nil {
		return s, nil
	}
	if s.UserImages, s.UserServiceImages, err = images(bu.sh, service); err != nil {
		return s, err
	}
	if s.UserStorageBytes, err = du(bu.root); err != nil {
		return s, err
	}
	if s.UserSystemDF, err = bu.sh("system", "df", "--format", dfFormat); err != nil {
		return s, err
	}
	s.UserSystemDF = strings.TrimSpace(s.UserSystemDF)
	logf("%s: %s's %d images (%d of the service), storage %d bytes, df %s", point, bu.name, s.UserImages, s.UserServiceImages, s.UserStorageBytes, s.UserSystemDF)
	return s, nil
}

// settle waits until the image count of both stores stays the same for
// 3 s (the collection runs after each build, off the deploy), at most 60 s.
func settle(bu *podmanUser) {
	last, same := -1, 0
	for i := 0; i < 60 && same < 3; i++ {
		out, err := sh("podman", "images", "-aq")
		n := len(strings.Fields(out))
		if bu != nil && err == nil {
			out, err = bu.sh("images", "-aq")
			n += len(strings.Fields(out))
		}
		if err == nil && n == last {
			same++
		} else {
			same = 0
		}
		last = n
		time.Sleep(time.Second)
	}
}

func freePort() int {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func git(dir string, args ...string) error {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=b", "GIT_AUTHOR_EMAIL=b@example.com", "GIT_COMMITTER_NAME=b", "GIT_COMMITTER_EMAIL=b@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %v: %v\n%s", args, err, out)
	}
	return nil
}

func runOne(bin, dir, root string, bu *podmanUser, keep int) (r Run, err error) {
	began := time.Now()
	var b [3]byte
	rand.Read(b[:])
	r = Run{Keep: keep, Service: "disk" + hex.EncodeToString(b[:])}
	defer func() { r.Duration = time.Since(began).Round(time.Second).String() }()
	work := filepath.Join(dir, "work")
	os.MkdirAll(work, 0o755)
	if err := git(dir, "init", "-q", "--bare", "-b", "main", "app.git"); err != nil {
		return r, err
	}
	if err := git(work, "init", "-q", "-b", "main"); err != nil {
		return r, err
	}
	commit := func(msg string) error {
		os.WriteFile(filepath.Join(work, "app.py"), []byte(app), 0o644)
		os.WriteFile(filepath.Join(work, "requirements.txt"), []byte("# stdlib only\n"), 0o644)
		os.WriteFile(filepath.Join(work, "message.txt"), []byte(msg), 0o644)
		asset := make([]byte, *flagAssetKB<<10)
		rand.Read(asset)
		os.WriteFile(filepath.Join(work, "asset.bin"), asset, 0o644)
		if err := git(work, "add", "-A"); err != nil {
			return err
		}
		if err := git(work, "commit", "-q", "-m", msg); err != nil {
			return err
		}
		return git(work, "push", "-q", filepath.Join(dir, "app.git"), "main")
	}
	if err := commit("d1"); err != nil {
		return r, err
	}
	var backend string
	backend, err = sh("git", "--exec-path")
	if err != nil {
		return r, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	srv := &http.Server{Handler: &cgi.Handler{Path: filepath.Join(backend, "git-http-backend"),
		Env: []string{"GIT_PROJECT_ROOT=" + dir, "GIT_HTTP_EXPORT_ALL=1"}}}
	go srv.Serve(ln)
	defer srv.Close()
	repoURL := "http://" + ln.Addr().String() + "/app.git"

	admin := fmt.Sprintf("127.0.0.1:%d", freePort())
	port := freePort()
	site := fmt.Sprintf("127.0.0.1:%d", port)
	caddyfile := fmt.Sprintf(`{
	admin %s
	auto_https off
	podcell {
		owner podcellbench-disk
		runtime_image python3.11-debian %s
		keep_images %d
		build_user %s
	}
}
http://:%d {
	podcell {
		hosts *.apps.localhost
	}
}
`, admin, *flagPythonBase, keep, *flagBuildUser, port)
	os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(caddyfile), 0o644)
	logf("keep_images %d: service %s", keep, r.Service)
	var s Sample
	s, err = measure("before the first deploy", 0, root, bu, r.Service)
	r.Samples = append(r.Samples, s)
	if err != nil {
		return r, err
	}
	logFile, _ := os.Create(filepath.Join(dir, "caddy.log"))
	cmd := exec.Command(bin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
		}
		logFile.Close()
	}()
	call := func(method, path, body string) (int, string, error) {
		req, _ := http.NewRequest(method, "http://"+admin+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out), nil
	}
	for i := 0; ; i++ {
		if _, _, err := call("GET", "/config/", ""); err == nil {
			break
		}
		if i > 300 {
			return r, errors.New("caddy's admin API did not come up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	get := func() string {
		req, _ := http.NewRequest("GET", "http://"+site+"/", nil)
		req.Host = r.Service + ".apps.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return string(out)
	}
	waitBuild := func(id int) (string, error) {
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			_, body, err := call("GET", "/podcell/services/"+r.Service+"/builds", "")
			if err == nil {
				var builds []struct {
					ID      int     `json:"id"`
					Status  string  `json:"status"`
					Reason  string  `json:"reason"`
					Seconds float64 `json:"seconds"`
				}
				json.Unmarshal([]byte(body), &builds)
				for _, bd := range builds {
					if bd.ID == id && bd.Status != "running" {
						r.BuildSecs = append(r.BuildSecs, bd.Seconds)
						if bd.Status != "succeeded" {
							return bd.Status, fmt.Errorf("build %d %s: %s", id, bd.Status, bd.Reason)
						}
						return bd.Status, nil
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		return "", fmt.Errorf("build %d did not end in 5 minutes", id)
	}
	spec := fmt.Sprintf(`{"git": {"url": %q, "ref": "main", "runtime": "python3.11-debian", "start": "python3 app.py"}, "pause_after": -1, "queue_timeout": "2m"}`, repoURL)
	if code, body, err := call("PUT", "/podcell/services/"+r.Service, spec); err != nil || code != 201 {
		return r, fmt.Errorf("declare the service: %d %s %v", code, body, err)
	}
	for n := 1; n <= *flagDeploys; n++ {
		msg := fmt.Sprintf("d%d", n)
		if n > 1 {
			if err := commit(msg); err != nil {
				return r, err
			}
			code, body, err := call("POST", "/podcell/services/"+r.Service+"/deploy", "")
			if err != nil || code != 202 {
				return r, fmt.Errorf("deploy %d: %d %s %v", n, code, body, err)
			}
		}
		if _, err := waitBuild(n); err != nil {
			return r, err
		}
		deadline := time.Now().Add(time.Minute)
		for get() != msg {
			if time.Now().After(deadline) {
				return r, fmt.Errorf("deploy %d: %q does not serve", n, msg)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n%*flagEvery == 0 || n == 1 {
			settle(bu)
			s, err := measure(fmt.Sprintf("after deploy %d", n), n, root, bu, r.Service)
			r.Samples = append(r.Samples, s)
			if err != nil {
				return r, err
			}
		}
	}
	if code, body, err := call("DELETE", "/podcell/services/"+r.Service, ""); err != nil || code != 204 {
		return r, fmt.Errorf("delete the service: %d %s %v", code, body, err)
	}
	settle(bu)
	s, err = measure("after deleting the service", *flagDeploys, root, bu, r.Service)
	r.Samples = append(r.Samples, s)
	// What the collections logged.
	logs, _ := os.ReadFile(filepath.Join(dir, "caddy.log"))
	for _, line := range strings.Split(string(logs), "\n") {
		var e struct {
			Msg    string   `json:"msg"`
			Images []string `json:"images"`
			Freed  int64    `json:"freed_bytes"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "removed images" {
			r.Removed += len(e.Images)
			r.FreedBytes += e.Freed
		}
	}
	return r, err
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func (rep Report) markdown() string {
	var w strings.Builder
	fmt.Fprintf(&w, "## Disk use over %d deploys of one service, %s\n\n", rep.Deploys, rep.Date)
	fmt.Fprintf(&w, "Machine: %s.  \n", rep.Machine)
	fmt.Fprintf(&w, "Podman storage: %s (rootful)", rep.GraphRoot)
	if rep.UserRoot != "" {
		fmt.Fprintf(&w, " and %s (the build user %s's, rootless)", rep.UserRoot, rep.BuildUser)
	}
	fmt.Fprintf(&w, ". Load average %s before, %s after.  \n", rep.LoadBefore, rep.LoadAfter)
	builds := "Builds ran as root through the rootful API (`build_user root`)."
	if rep.UserRoot != "" {
		builds = fmt.Sprintf("Builds ran rootless as `build_user %s` in its own store; each built image then moved into the rootful store.", rep.BuildUser)
	}
	fmt.Fprintf(&w, "%s Each deploy: a commit that changes message.txt and rewrites asset.bin (%d KiB of random bytes, a stand-in for a bundled asset), `POST /podcell/services/<svc>/deploy`, wait until the build succeeded and the new message is served. The service was declared through the admin API (python3.11-debian, FROM %s) and deleted through it at the end. Storage figures are of the whole storage directories (`du -sxb`): read the differences to the first row.\n\n", builds, *flagAssetKB, *flagPythonBase)
	for _, r := range rep.Runs {
		fmt.Fprintf(&w, "### keep_images %d (service %s, %s)\n\n", r.Keep, r.Service, r.Duration)
		if rep.UserRoot == "" {
			fmt.Fprintf(&w, "| point | images (`podman images -a`) | of the service | storage | storage - first row | `podman system df` images |\n|---|---:|---:|---:|---:|---|\n")
		} else {
			fmt.Fprintf(&w, "| point | rootful images (`podman images -a`) | of the service | rootful storage | %[1]s's images | of the service | %[1]s's storage | both stores - first row | `podman system df` images, rootful / %[1]s's |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n", rep.BuildUser)
		}
		var base int64
		for i, s := range r.Samples {
			if i == 0 {
				base = s.TotalBytes()
			}
			if rep.UserRoot == "" {
				fmt.Fprintf(&w, "| %s | %d | %d | %s | %+.1f MB | %s |\n", s.Point, s.Images, s.ServiceImages, mb(s.StorageBytes), float64(s.StorageBytes-base)/1e6, s.SystemDF)
				continue
			}
			fmt.Fprintf(&w, "| %s | %d | %d | %s | %d | %d | %s | %+.1f MB | %s / %s |\n", s.Point, s.Images, s.ServiceImages, mb(s.StorageBytes),
				s.UserImages, s.UserServiceImages, mb(s.UserStorageBytes), float64(s.TotalBytes()-base)/1e6, s.SystemDF, s.UserSystemDF)
		}
		var total float64
		for _, s := range r.BuildSecs {
			total += s
		}
		if len(r.BuildSecs) > 0 {
			fmt.Fprintf(&w, "\n%d builds, %.1f s each on average. The collections logged %d images removed (from either store), %s freed (estimated from Podman's layer sizes).\n\n", len(r.BuildSecs), total/float64(len(r.BuildSecs)), r.Removed, mb(r.FreedBytes))
		}
	}
	return w.String()
}
