package caddymodule_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// End-to-end tests: they build the Caddy binary, run it with a Caddyfile and
// drive traffic through it into real Podman containers. Each starts with
// e2e(t), the one switch: without a reachable Podman API the test is
// skipped with a message, except under CI=true (make test sets it), where
// it fails, so CI never skips them silently. The binary is built the first
// time a test gets past the switch: `go test ./...` on a machine without
// Podman runs the in-process tests and builds nothing.

var (
	podmanOnce sync.Once
	podmanErr  error
	caddyOnce  sync.Once
	caddyDir   string
	caddyBin   string
	caddyErr   error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if caddyDir != "" {
		os.RemoveAll(caddyDir)
	}
	os.Exit(code)
}

// e2e is the switch of the end-to-end tests: it returns the Podman runtime
// (skipping or, under CI, failing the test without one) and builds the
// Caddy binary once.
func e2e(t *testing.T) *scaler.Podman {
	t.Helper()
	// Asked once: without Podman every test skips at once, not after the
	// client's own wait for an answer.
	podmanOnce.Do(func() {
		_, podmanErr = scaler.NewPodman(context.Background(), scalertest.URI())
	})
	if podmanErr != nil && os.Getenv("CI") == "" {
		t.Skipf("no Podman API (run scripts/setup-host.sh as root): %v", podmanErr)
	}
	rt := scalertest.Podman(t) // under CI, its absence fails here
	needCaddy(t)
	return rt
}

// needCaddy builds the Caddy binary (once per test process) into caddyBin.
func needCaddy(t *testing.T) {
	t.Helper()
	caddyOnce.Do(func() {
		if caddyDir, caddyErr = os.MkdirTemp("", "podcell-e2e-"); caddyErr != nil {
			return
		}
		bin := filepath.Join(caddyDir, "caddy")
		cmd := exec.Command("go", "build", "-tags", "containers_image_openpgp", "-o", bin, "./cmd/caddy")
		cmd.Dir = scalertest.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			caddyErr = fmt.Errorf("build caddy: %v\n%s", err, out)
			return
		}
		caddyBin = bin
	})
	if caddyErr != nil {
		t.Fatal(caddyErr)
	}
}

type caddyProc struct {
	t          *testing.T
	rt         *scaler.Podman
	cmd        *exec.Cmd
	dir        string
	owner      string
	http       string // host:port of the site
	admin      string // host:port of the admin API
	image      string
	extra      string // more global podcell options
	adminExtra string // more lines of the admin block
	log        *bytes.Buffer
	logMu      *sync.Mutex
	exited     chan struct{}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// caddyfile fills {owner}, {admin}, {http}, {httpport}, {image}, {extra}
// and {adminextra} in a Caddyfile template.
func (c *caddyProc) caddyfile(tmpl string) string {
	_, port, _ := strings.Cut(c.http, ":")
	return strings.NewReplacer("{owner}", c.owner, "{admin}", c.admin, "{http}", c.http, "{httpport}", port, "{image}", c.image, "{extra}", c.extra, "{adminextra}", c.adminExtra).Replace(tmpl)
}

const globals = `{
	admin {admin} {
		{adminextra}
	}
	auto_https off
	podcell {
		owner {owner}
		{extra}
	}
}
`

// option adds lines to the global options.
type option func(*caddyProc)

// withGlobal adds a line to the global podcell block.
func withGlobal(line string) option { return func(c *caddyProc) { c.extra += line + "\n" } }

// withAdmin adds a line to the admin block; {admin} in it is the admin address.
func withAdmin(line string) option {
	return func(c *caddyProc) { c.adminExtra += strings.ReplaceAll(line, "{admin}", c.admin) + "\n" }
}

func startCaddy(t *testing.T, site string, opts ...option) *caddyProc {
	t.Helper()
	rt := e2e(t)
	var b [4]byte
	rand.Read(b[:])
	c := &caddyProc{
		t: t, rt: rt, dir: t.TempDir(), owner: "podcelle2e-" + hex.EncodeToString(b[:]),
		http:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		admin: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		image: scalertest.Hello(t, rt),
		log:   new(bytes.Buffer), logMu: new(sync.Mutex), exited: make(chan struct{}),
	}
	for _, o := range opts {
		o(c)
	}
	file := filepath.Join(c.dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(c.caddyfile(globals+site)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.launch()
	t.Cleanup(c.stop)
	return c
}

// launch starts Caddy with the Caddyfile in c.dir and waits for its admin API.
func (c *caddyProc) launch() {
	t := c.t
	t.Helper()
	c.exited = make(chan struct{})
	c.cmd = exec.Command(caddyBin, "run", "--config", filepath.Join(c.dir, "Caddyfile"), "--adapter", "caddyfile")
	c.cmd.Env = append(os.Environ(), "HOME="+c.dir, "XDG_DATA_HOME="+c.dir, "XDG_CONFIG_HOME="+c.dir)
	c.cmd.Stdout = lockedWriter{c.logMu, c.log}
	c.cmd.Stderr = lockedWriter{c.logMu, c.log}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := c.exited
	go func() { c.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + c.admin + "/config/")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-c.exited:
			t.Fatalf("caddy exited at start:\n%s", c.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy admin API did not come up:\n%s", c.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restart stops Caddy (checking it left no container) and starts it again
// with the same data directory.
func (c *caddyProc) restart() {
	c.stop()
	c.launch()
}

func (c *caddyProc) logs() string {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	return c.log.String()
}

// stop stops Caddy like an operator does (SIGINT) and checks that it left
// no container behind.
func (c *caddyProc) stop() {
	select {
	case <-c.exited:
	default:
		c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.exited:
		case <-time.After(90 * time.Second):
			c.cmd.Process.Kill()
			c.t.Errorf("caddy did not stop within 90s")
		}
	}
	if c.t.Failed() {
		c.t.Logf("caddy log:\n%s", tail(c.logs(), 60))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := c.rt.List(ctx, scaler.LabelOwner, c.owner)
	if err != nil {
		c.t.Errorf("list containers: %v", err)
	}
	for _, ct := range list {
		c.t.Errorf("container %s (%s) left behind after caddy stopped", ct.Name, ct.State)
		c.rt.Remove(ctx, ct.ID)
	}
	nets, err := c.rt.ListNetworks(ctx)
	if err != nil {
		c.t.Errorf("list networks: %v", err)
	}
	for _, n := range nets {
		if n.Labels[scaler.LabelOwner] == c.owner {
			c.t.Errorf("network %s left behind after caddy stopped", n.Name)
			c.rt.RemoveNetwork(ctx, n.Name)
		}
	}
	// The host devices that shaped what instances sent (IFBs) carry their
	// owner in their alias (see scaler/shape.go): each goes with its
	// container.
	aliases, _ := filepath.Glob("/sys/class/net/*/ifalias")
	for _, f := range aliases {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "owner="+c.owner+" ") {
			dev := filepath.Base(filepath.Dir(f))
			c.t.Errorf("host device %s (%s) left behind after caddy stopped", dev, strings.TrimSpace(string(b)))
			exec.Command("ip", "link", "del", dev).Run()
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *caddyProc) containers(states ...string) int {
	list, err := c.rt.List(context.Background(), scaler.LabelOwner, c.owner)
	if err != nil {
		c.t.Fatal(err)
	}
	n := 0
	for _, ct := range list {
		for _, s := range states {
			if ct.State == s {
				n++
			}
		}
	}
	return n
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 600, MaxConnsPerHost: 0}, Timeout: 60 * time.Second}

type reply struct {
	code     int
	body     string
	instance string
	seq      int
	header   http.Header
	err      error
}

func (c *caddyProc) get(path string) reply {
	resp, err := client.Get("http://" + c.http + path)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	seq, _ := strconv.Atoi(resp.Header.Get("X-Seq"))
	return reply{code: resp.StatusCode, body: string(b), instance: resp.Header.Get("X-Instance"), seq: seq, header: resp.Header}
}

// getHost is get with the request's Host set ("" keeps the site's), for
// host mode's <service>.<domain> routes.
func (c *caddyProc) getHost(host, path string) reply {
	req, _ := http.NewRequest("GET", "http://"+c.http+path, nil)
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, body: string(b)}
}

var eventually = scalertest.Eventually

func TestFirstRequestAndBurstAtZero(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell burst {
		image {image}
		memory 256MB
		max_instances 4
		concurrency 20
		queue_size 1000
		pause_after off
		idle_timeout 1m
	}
}`)
	if n := c.containers(scaler.StateRunning); n != 0 {
		t.Fatalf("%d containers run before the first request", n)
	}
	// 500 concurrent requests at zero: every one answered 200 by the app,
	// none lost, none sent to the app twice.
	const n = 500
	replies := make([]reply, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i] = c.get("/")
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(t0)
	seqs := map[string][]int{}
	cold := 0
	for i, r := range replies {
		if r.err != nil || r.code != 200 {
			t.Fatalf("request %d: code %d err %v body %q", i, r.code, r.err, r.body)
		}
		seqs[r.instance] = append(seqs[r.instance], r.seq)
		if r.header.Get("Podcell-Cold-Start") != "" {
			cold++
		}
	}
	// Each instance numbers the requests it served 1, 2, 3...: a duplicate
	// or a request the client never heard of would leave a gap or a repeat.
	total := 0
	for inst, s := range seqs {
		seen := make([]bool, len(s)+1)
		for _, q := range s {
			if q < 1 || q > len(s) || seen[q] {
				t.Fatalf("instance %s served sequence numbers %v: not exactly 1..%d", inst, s, len(s))
			}
			seen[q] = true
		}
		total += len(s)
	}
	if total != n || len(seqs) > 4 {
		t.Fatalf("%d replies from %d instances; want %d from at most 4", total, len(seqs), n)
	}
	if cold == 0 {
		t.Errorf("no reply carried Podcell-Cold-Start although all waited for a start")
	}
	t.Logf("burst of %d at zero: all 200 in %s, %d instances, %d marked cold", n, took, len(seqs), cold)
	if r := c.get("/"); r.code != 200 || r.header.Get("Podcell-Cold-Start") != "" {
		t.Errorf("warm request: %d, cold-start header %q", r.code, r.header.Get("Podcell-Cold-Start"))
	}
}

func TestLimitsAnswer503(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell tight {
		image {image}
		max_instances 1
		concurrency 1
		queue_size 2
		queue_timeout 1s
		pause_after off
	}
}`)
	// The first start may take longer than the 1s queue timeout on a busy
	// machine; what matters here is a warm instance.
	eventually(t, 30*time.Second, "no instance came up", func() bool { return c.get("/").code == 200 })
	hold := make(chan reply)
	go func() { hold <- c.get("/sleep?d=4s") }()
	time.Sleep(300 * time.Millisecond)
	queued := make(chan reply, 2)
	for i := 0; i < 2; i++ {
		go func() { queued <- c.get("/") }()
	}
	time.Sleep(300 * time.Millisecond)
	t0 := time.Now()
	full := c.get("/")
	if full.code != 503 || full.header.Get("Retry-After") == "" {
		t.Errorf("queue full: %d Retry-After %q, want 503 with Retry-After", full.code, full.header.Get("Retry-After"))
	}
	if time.Since(t0) > 500*time.Millisecond {
		t.Errorf("queue full answered after %s; it must not wait", time.Since(t0))
	}
	for i := 0; i < 2; i++ {
		r := <-queued
		if r.code != 503 || r.header.Get("Retry-After") == "" {
			t.Errorf("queue timeout: %d Retry-After %q, want 503 with Retry-After", r.code, r.header.Get("Retry-After"))
		}
	}
	if r := <-hold; r.code != 200 {
		t.Errorf("the held request: %d", r.code)
	}
	if n := c.containers(scaler.StateRunning); n != 1 {
		t.Errorf("%d instances run, max_instances is 1", n)
	}
}

func TestPauseThenScaleToZero(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell idle {
		image {image}
		pause_after 500ms
		idle_timeout 3s
	}
}`)
	first := c.get("/")
	if first.code != 200 {
		t.Fatalf("first: %d %v", first.code, first.err)
	}
	eventually(t, 10*time.Second, "instance was not paused", func() bool { return c.containers(scaler.StatePaused) == 1 })
	again := c.get("/")
	if again.code != 200 || again.instance != first.instance || again.header.Get("Podcell-Cold-Start") == "" {
		t.Fatalf("after pause: %d from %s (was %s), Podcell-Cold-Start %q; want the resumed instance, marked",
			again.code, again.instance, first.instance, again.header.Get("Podcell-Cold-Start"))
	}
	t.Logf("resume through the gateway: Podcell-Cold-Start %s", again.header.Get("Podcell-Cold-Start"))
	eventually(t, 20*time.Second, "instances did not scale to zero", func() bool {
		return c.containers(scaler.StateRunning, scaler.StatePaused) == 0
	})
}

func TestStartFailureIs502WithLogs(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell broken {
		image {image}
		env HELLO_FAIL_START "config error: DATABASE_URL is not set"
	}
}`)
	r := c.get("/")
	if r.code != 502 {
		t.Fatalf("got %d, want 502", r.code)
	}
	if strings.Contains(r.body, "DATABASE_URL") {
		t.Errorf("the client saw the container's logs: %q", r.body)
	}
	// It sees what happened, in a line of text.
	if !strings.HasPrefix(r.body, "service broken: ") || strings.Count(r.body, "\n") != 1 {
		t.Errorf("502 body %q, want one line saying what happened", r.body)
	}
	t.Logf("502 body: %s", strings.TrimSpace(r.body))
	// Caddy's output reaches us through a pipe: give it a moment.
	eventually(t, 5*time.Second, "caddy's log lacks the container's last words", func() bool {
		return strings.Contains(c.logs(), "DATABASE_URL is not set")
	})
}

func TestReloadUnderLoad(t *testing.T) {
	e2e(t)
	site := `
http://{http} {
	podcell reload {
		image {image}
		concurrency 50
		pause_after off
		env GREETING %s
	}
}`
	c := startCaddy(t, fmt.Sprintf(site, "v1"))
	warm := c.get("/")
	if warm.code != 200 {
		t.Fatalf("warm-up: %d", warm.code)
	}
	load := func(cfg string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+c.admin+"/load", strings.NewReader(c.caddyfile(globals+cfg)))
		req.Header.Set("Content-Type", "text/caddyfile")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/load: %d %s", resp.StatusCode, b)
		}
	}

	// Steady load at about 100 requests per second.
	var sent, failed atomic.Int64
	var mu sync.Mutex
	var lastBody string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent.Add(1)
				r := c.get("/")
				if r.code != 200 {
					failed.Add(1)
					t.Logf("failed request: %d %v", r.code, r.err)
					return
				}
				mu.Lock()
				lastBody = r.body
				mu.Unlock()
			}()
		}
	}()
	time.Sleep(time.Second)
	// Same service settings: warm instances stay.
	load(fmt.Sprintf(site, "v1"))
	time.Sleep(time.Second)
	if r := c.get("/"); r.instance != warm.instance {
		t.Errorf("an unchanged reload replaced the instance (%s -> %s)", warm.instance, r.instance)
	}
	// A new env: instances roll over.
	load(fmt.Sprintf(site, "v2"))
	eventually(t, 20*time.Second, "responses did not switch to v2", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.HasPrefix(lastBody, "v2 ")
	})
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d requests during two reloads, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed across reloads", failed.Load(), sent.Load())
	}
	eventually(t, 20*time.Second, "the old revision's instance was not removed", func() bool {
		return c.containers(scaler.StateRunning) == 1
	})

	// A global option the running podcell was made with: the reload
	// loads, and says that option waits for a restart.
	req, _ := http.NewRequest("POST", "http://"+c.admin+"/load",
		strings.NewReader(c.caddyfile(strings.Replace(globals, "{extra}", "{extra}\n\t\tstandby created", 1)+fmt.Sprintf(site, "v2"))))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(c.logs(), `until Caddy restarts`) || !strings.Contains(c.logs(), `"options":["standby"]`) {
		t.Errorf("a reload changing standby: %d; want it loaded and a warning naming standby", resp.StatusCode)
	}
}

func TestWebSocketOutlivesPauseAfter(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell ws {
		image {image}
		pause_after 300ms
		idle_timeout 1m
	}
}`)
	cfg, err := websocket.NewConfig("ws://"+c.http+"/ws", "http://"+c.http)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	echo := func(msg string) {
		t.Helper()
		ws.SetDeadline(time.Now().Add(5 * time.Second))
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil || got != msg {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
	echo("one")
	// Silent for several pause_after periods: the open stream is activity.
	time.Sleep(2 * time.Second)
	if n := c.containers(scaler.StatePaused); n != 0 {
		t.Errorf("%d instances paused under an open WebSocket", n)
	}
	echo("two")
}

func TestValidateCatchesBadConfig(t *testing.T) {
	e2e(t) // the unreachable Podman case needs the binary; the rest run in process too (caddyfile_test.go)
	cases := []struct {
		name, caddyfile string
		want            []string // all must appear in caddy's output
	}{
		{"unknown subdirective", "podcell a {\n\timage x\n\tmemroy 256MB\n}", []string{"unknown podcell subdirective", "memroy", "Caddyfile:7"}},
		{"memory out of range", "podcell a {\n\timage x\n\tmemory 100MB\n}", []string{"memory 100 MB is out of range: use 128 MB to 7076 MB", "Caddyfile:7"}},
		{"memory unit", "podcell a {\n\timage x\n\tmemory 256kb\n}", []string{"use MB or GB", "Caddyfile:7"}},
		{"bad duration", "podcell a {\n\timage x\n\tidle_timeout soon\n}", []string{"idle_timeout", "want a positive duration", "Caddyfile:7"}},
		{"no image", "podcell a {\n\tport 8080\n}", []string{"image or git is required"}},
		{"bad name", "podcell Hello_World {\n\timage x\n}", []string{"Hello_World", "is invalid: use 1-40 lowercase letters"}},
		{"min over max", "podcell a {\n\timage x\n\tmin_instances 3\n\tmax_instances 2\n}", []string{"min_instances 3 exceeds max_instances 2"}},
		{"cron expression", "podcell a {\n\timage x\n\tcron \"61 * * * *\" GET /x {\n\t\tname nightly\n\t}\n}", []string{`cron job \"nightly\" of service a: schedule \"61 * * * *\"`, "end of range (61) above maximum (59)"}},
		{"cron method", "podcell a {\n\timage x\n\tcron @daily FETCH /x {\n\t\tname daily\n\t}\n}", []string{`cron job \"daily\" of service a: method \"FETCH\" is not supported`}},
		{"cron time zone", "podcell a {\n\timage x\n\tcron @daily GET /x {\n\t\tname daily\n\t\ttz Mars/Olympus\n\t}\n}", []string{`cron job \"daily\" of service a: tz \"Mars/Olympus\" is not a known time zone`}},
		{"cron unnamed", "podcell a {\n\timage x\n\tcron \"* * *\" GET /tasks/poll\n}", []string{`cron job \"tasks-poll-`, "expected exactly 5 fields", "Caddyfile:7"}},
		{"cron secret env", "podcell a {\n\timage x\n\tenv PODCELL_CRON_SECRET x\n}", []string{"PODCELL_CRON_SECRET is set by podcell"}},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, "Caddyfile")
			os.WriteFile(file, []byte("{\n\tadmin off\n}\n:0 {\n"+tc.caddyfile+"\n}\n"), 0o644)
			out, err := exec.Command(caddyBin, "validate", "--config", file, "--adapter", "caddyfile").CombinedOutput()
			if err == nil {
				t.Fatalf("caddy validate accepted it:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Fatalf("caddy validate said:\n%s\nwant it to contain %q", tail(string(out), 5), w)
				}
			}
		})
	}
	t.Run("cron in JSON", func(t *testing.T) {
		file := filepath.Join(dir, "caddy.json")
		os.WriteFile(file, []byte(`{"admin": {"disabled": true}, "apps": {"http": {"servers": {"s": {"listen": [":0"], "routes": [{"handle": [
			{"handler": "podcell", "service": "a", "image": "x", "cron": [{"name": "nightly", "schedule": "@daily", "method": "FETCH", "path": "/x"}]}]}]}}}}}`), 0o644)
		out, err := exec.Command(caddyBin, "validate", "--config", file).CombinedOutput()
		if err == nil {
			t.Fatalf("caddy validate accepted it:\n%s", out)
		}
		if !strings.Contains(string(out), `provision http.handlers.podcell: cron job \"nightly\" of service a: method \"FETCH\" is not supported`) {
			t.Fatalf("caddy validate said:\n%s", tail(string(out), 5))
		}
	})
	t.Run("unreachable podman", func(t *testing.T) {
		file := filepath.Join(dir, "Caddyfile")
		os.WriteFile(file, []byte("{\n\tadmin off\n\tpodcell {\n\t\tpodman unix:///nonexistent/podman.sock\n\t}\n}\n:0 {\n\tpodcell a {\n\t\timage x\n\t}\n}\n"), 0o644)
		out, err := exec.Command(caddyBin, "validate", "--config", file, "--adapter", "caddyfile").CombinedOutput()
		if err == nil {
			t.Fatalf("caddy validate accepted it:\n%s", out)
		}
		if !strings.Contains(string(out), "podman API at unix:///nonexistent/podman.sock does not answer") {
			t.Fatalf("caddy validate said:\n%s", tail(string(out), 5))
		}
	})
}
