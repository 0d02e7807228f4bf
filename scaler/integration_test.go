package scaler_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap/zaptest"

	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// These tests start real containers through the Podman API.

type env struct {
	t     *testing.T
	rt    *scaler.Podman
	image string
	owner string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	rt := scalertest.Podman(t)
	return envFor(t, rt, scalertest.Hello(t, rt), "podcelltest-")
}

// envFor gives a test its own owner label on rt. At the end, every
// container with that label is removed, and one left running after the
// test closed its scalers is a failure: Close must remove them.
func envFor(t *testing.T, rt *scaler.Podman, image, ownerPrefix string) *env {
	var b [4]byte
	rand.Read(b[:])
	e := &env{t: t, rt: rt, image: image, owner: ownerPrefix + hex.EncodeToString(b[:])}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := rt.List(ctx, scaler.LabelOwner, e.owner)
		if err != nil {
			t.Errorf("list leftovers: %v", err)
			return
		}
		for _, c := range list {
			t.Errorf("container %s (%s) left behind", c.Name, c.State)
			rt.Remove(ctx, c.ID)
		}
		// Networks too: closing a scaler that keeps nothing removes them.
		for _, n := range ownedNetworks(t, rt, e.owner) {
			t.Errorf("network %s left behind", n.Name)
			rt.RemoveNetwork(ctx, n.Name)
		}
		// And the devices that shaped what instances sent.
		for _, name := range ownedIFBs(t, e.owner) {
			t.Errorf("shaping device %s left behind", name)
			if l, err := netlink.LinkByName(name); err == nil {
				netlink.LinkDel(l)
			}
		}
	})
	return e
}

func (e *env) scaler(opts scaler.Options) *scaler.Scaler {
	e.t.Helper()
	opts.Owner = e.owner
	opts.Logger = zaptest.NewLogger(e.t)
	s, err := scaler.New(context.Background(), e.rt, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) config(name string) scaler.ServiceConfig {
	return scaler.ServiceConfig{
		Name:         name,
		Image:        e.image,
		Port:         8080,
		MemoryMB:     256,
		MaxInstances: 4,
		Concurrency:  2,
		PauseAfter:   -1,
		IdleTimeout:  time.Minute,
		StableWindow: time.Minute,
		QueueTimeout: 20 * time.Second,
		StartTimeout: 20 * time.Second,
		StopGrace:    2 * time.Second,
	}
}

func closeScaler(t *testing.T, s *scaler.Scaler) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var eventually = scalertest.Eventually

func (e *env) running() int {
	list, err := e.rt.List(context.Background(), scaler.LabelOwner, e.owner)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, c := range list {
		if c.State == scaler.StateRunning || c.State == scaler.StatePaused {
			n++
		}
	}
	return n
}

func TestScaleFromZeroToOne(t *testing.T) {
	e := newEnv(t)
	s := e.scaler(scaler.Options{})
	defer closeScaler(t, s)
	svc, err := s.Apply(e.config("zero"))
	if err != nil {
		t.Fatal(err)
	}
	if n := e.running(); n != 0 {
		t.Fatalf("%d containers run before any request, want 0", n)
	}
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, l.Addr, "/")
	l.Release()
	if code != 200 || !strings.HasPrefix(body, "hello from ") {
		t.Fatalf("got %d %q", code, body)
	}
	if l.Wake != scaler.WakeStart || l.Waited <= 0 {
		t.Errorf("first request: wake=%s waited=%s, want a cold start", l.Wake, l.Waited)
	}
	t.Logf("cold start: acquire waited %s", l.Waited)
	if n := e.running(); n != 1 {
		t.Errorf("%d containers run after one request, want 1", n)
	}
	// A second request reuses the warm instance.
	l2, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l2.Release()
	if l2.Wake != scaler.WakeNone || l2.Addr != l.Addr {
		t.Errorf("second request: wake=%s addr=%s, want the warm instance %s", l2.Wake, l2.Addr, l.Addr)
	}
}

func TestScaleOutUnderLoadAndBackToZero(t *testing.T) {
	e := newEnv(t)
	s := e.scaler(scaler.Options{})
	defer closeScaler(t, s)
	cfg := e.config("burst")
	cfg.Concurrency = 2
	cfg.MaxInstances = 3
	cfg.IdleTimeout = 2 * time.Second
	cfg.StableWindow = time.Second
	svc, err := s.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 6 concurrent slow requests need 3 instances of concurrency 2.
	const n = 6
	var wg sync.WaitGroup
	instances := make(chan string, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := svc.Acquire(context.Background())
			if err != nil {
				errs <- err
				return
			}
			defer l.Release()
			resp, err := http.Get("http://" + l.Addr + "/sleep?d=1500ms")
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			instances <- resp.Header.Get("X-Instance")
		}()
	}
	wg.Wait()
	close(errs)
	close(instances)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for h := range instances {
		seen[h]++
	}
	if len(seen) != 3 {
		t.Fatalf("requests landed on %d instances %v, want 3", len(seen), seen)
	}
	for h, c := range seen {
		if c > cfg.Concurrency {
			t.Errorf("instance %s took %d concurrent requests, concurrency is %d", h, c, cfg.Concurrency)
		}
	}
	// Idle: back to zero after idle_timeout.
	eventually(t, 30*time.Second, "instances did not scale to zero", func() bool {
		return svc.Snapshot().Up() == 0 && e.running() == 0
	})
}

func TestMaxInstancesBoundsScaleOut(t *testing.T) {
	e := newEnv(t)
	s := e.scaler(scaler.Options{})
	defer closeScaler(t, s)
	cfg := e.config("bounded")
	cfg.Concurrency = 1
	cfg.MaxInstances = 2
	svc, err := s.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := 0
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := svc.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			peak = max(peak, svc.Snapshot().Up())
			mu.Unlock()
			http.Get("http://" + l.Addr + "/sleep?d=200ms")
			l.Release()
		}()
	}
	wg.Wait()
	if peak != 2 {
		t.Errorf("peak instances %d, want max_instances 2", peak)
	}
	if e.running() > 2 {
		t.Errorf("%d containers run, max_instances is 2", e.running())
	}
}

func TestPauseAndResume(t *testing.T) {
	e := newEnv(t)
	s := e.scaler(scaler.Options{})
	defer closeScaler(t, s)
	cfg := e.config("pauser")
	cfg.PauseAfter = 300 * time.Millisecond
	cfg.IdleTimeout = time.Minute
	svc, err := s.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	get(t, l.Addr, "/")
	l.Release()
	eventually(t, 10*time.Second, "instance was not paused", func() bool { return svc.Snapshot().Count("paused") == 1 })
	list, _ := e.rt.List(context.Background(), scaler.LabelOwner, e.owner)
	paused := 0
	for _, c := range list {
		if c.State == scaler.StatePaused {
			paused++
		}
	}
	if paused != 1 {
		t.Fatalf("podman reports %d paused containers, want 1", paused)
	}
	l2, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	code, _ := get(t, l2.Addr, "/")
	l2.Release()
	if code != 200 || l2.Wake != scaler.WakeResume || l2.Addr != l.Addr {
		t.Fatalf("after pause: code %d wake %s addr %s (was %s), want 200 from the resumed instance", code, l2.Wake, l2.Addr, l.Addr)
	}
	t.Logf("resume: acquire waited %s (cold start waited %s)", l2.Waited, l.Waited)
}

func TestSandboxLimits(t *testing.T) {
	e := newEnv(t)
	s := e.scaler(scaler.Options{})
	defer closeScaler(t, s)
	if !s.Host().LimitsEnforced() {
		t.Skip("this host cannot enforce limits (rootless on cgroup v1)")
	}
	svc, err := s.Apply(e.config("limits"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()

	if code, body := get(t, l.Addr, "/write?path=/oops"); code != 500 || !strings.Contains(body, "read-only file system") {
		t.Errorf("write to /: %d %q, want a read-only error", code, body)
	}
	for _, p := range []string{"/run/x", "/var/tmp/x"} {
		if code, _ := get(t, l.Addr, "/write?path="+p); code != 500 {
			t.Errorf("write to %s succeeded: only /tmp may be writable", p)
		}
	}
	if code, body := get(t, l.Addr, "/write?path=/tmp/ok"); code != 200 {
		t.Errorf("write to /tmp: %d %q", code, body)
	}

	_, body := get(t, l.Addr, "/limits")
	var lim map[string]string
	if err := json.Unmarshal([]byte(body), &lim); err != nil {
		t.Fatal(err)
	}
	t.Logf("limits seen in the container: %v", lim)
	wantMem := fmt.Sprint(256 << 20)
	switch lim["cgroup"] {
	case "v1":
		if lim["memory"] != wantMem || lim["memsw"] != wantMem {
			t.Errorf("memory limit %s, memory+swap %s; want both %s", lim["memory"], lim["memsw"], wantMem)
		}
		if lim["cpu"] != "14471 100000" {
			t.Errorf("cpu quota/period %q, want 14471 100000 (0.1447 core)", lim["cpu"])
		}
	case "v2":
		if lim["memory"] != wantMem || lim["swap"] != "0" {
			t.Errorf("memory.max %s swap %s; want %s and 0", lim["memory"], lim["swap"], wantMem)
		}
		if lim["cpu"] != "14471 100000" {
			t.Errorf("cpu.max %q, want 14471 100000", lim["cpu"])
		}
	}
	if lim["pids"] != "512" {
		t.Errorf("pids limit %q, want 512", lim["pids"])
	}
	// The quota above is what it serves with; it was created with the
	// startup boost (one core: its cpuset's one), which readiness lowered.
	if s.Host().Rootless {
		t.Log("rootless: no startup boost")
	} else if insp, err := containers.Inspect(e.rt.BindingsContext(context.Background()), svc.Snapshot().Instances[0].ID, nil); err != nil {
		t.Error(err)
	} else if insp.HostConfig.CpuQuota != 100000 {
		t.Errorf("created with CPU quota %d, want the startup boost 100000", insp.HostConfig.CpuQuota)
	}
	if strings.Contains(lim["cpuset"], ",") || strings.Contains(lim["cpuset"], "-") {
		t.Errorf("cpuset %q, want one core for 256 MB", lim["cpuset"])
	}
	if lim["CapEff"] != "0000000000000000" || lim["CapBnd"] != "0000000000000000" {
		t.Errorf("capabilities eff %s bnd %s, want none", lim["CapEff"], lim["CapBnd"])
	}
	if lim["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs %q, want 1", lim["NoNewPrivs"])
	}
	if !s.Host().Rootless {
		if strings.HasPrefix(lim["uid_map"], "0 0 ") {
			t.Errorf("uid_map %q: container root is host root; want a user namespace", lim["uid_map"])
		}
		// An explicit size keeps Podman 4.3 off its deadlocking
		// size-from-image path (see UserNSSize).
		if f := strings.Fields(lim["uid_map"]); len(f) != 3 || f[2] != fmt.Sprint(scaler.UserNSSize) {
			t.Errorf("uid_map %q: want a user namespace of %d ids", lim["uid_map"], scaler.UserNSSize)
		}
	}
	_, port := get(t, l.Addr, "/env?name=PORT")
	if port != "8080" {
		t.Errorf("PORT=%q, want 8080", port)
	}
}

func TestCrashIsNoticedAndReplaced(t *testing.T) {
	e := newEnv(t)
	s := e.scaler(scaler.Options{})
	defer closeScaler(t, s)
	svc, err := s.Apply(e.config("crashy"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first := l.Addr
	get(t, l.Addr, "/exit?code=3")
	l.Release()
	eventually(t, 10*time.Second, "the crash was not noticed", func() bool { return svc.Stats.Crashes.Load() == 1 })
	if n := svc.Stats.OOMKills.Load(); n != 0 {
		t.Errorf("an exit with code 3 counted as %d OOM kills", n)
	}
	l2, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release()
	if code, _ := get(t, l2.Addr, "/"); code != 200 {
		t.Fatalf("replacement answered %d", code)
	}
	if l2.Wake != scaler.WakeStart {
		t.Errorf("after a crash the next request should cold start a replacement, wake=%s (first %s, now %s)", l2.Wake, first, l2.Addr)
	}
}

func TestOOMKillIsRecorded(t *testing.T) {
	e := newEnv(t)
	s := e.scaler(scaler.Options{})
	defer closeScaler(t, s)
	if !s.Host().LimitsEnforced() {
		t.Skip("this host cannot enforce memory limits")
	}
	cfg := e.config("hungry")
	cfg.MemoryMB = 128
	svc, err := s.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 300 MiB in a 128 MiB instance: the kernel kills it mid-request.
	if resp, err := http.Get("http://" + l.Addr + "/alloc?mb=300"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("allocating 300 MiB in a 128 MiB instance succeeded")
		}
	}
	l.Release()
	eventually(t, 15*time.Second, "the OOM kill was not recorded", func() bool {
		return svc.Stats.Crashes.Load() == 1 && svc.Stats.OOMKills.Load() == 1
	})
	if n := svc.Snapshot().Up(); n != 0 {
		t.Errorf("%d instances up after the OOM kill, want the dead one gone", n)
	}
}

func TestCrashLoopingImageFailsFast(t *testing.T) {
	e := newEnv(t)
	s := e.scaler(scaler.Options{})
	defer closeScaler(t, s)
	cfg := e.config("broken")
	cfg.Env = map[string]string{"HELLO_FAIL_START": "cannot connect to database at db:5432"}
	svc, err := s.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = svc.Acquire(context.Background())
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for i, err := range errs {
		var se *scaler.StartError
		if !errors.As(err, &se) {
			t.Fatalf("waiter %d: err %v, want a *StartError", i, err)
		}
		if !strings.Contains(strings.Join(se.Logs, "\n"), "cannot connect to database") || se.ExitCode != 1 {
			t.Errorf("waiter %d: exit %d logs %q; want exit 1 and the app's last words", i, se.ExitCode, se.Logs)
		}
	}
	if took > cfg.QueueTimeout/2 {
		t.Errorf("waiters failed after %s; they must fail when the container exits, not at the queue timeout", took)
	}
	// Within the backoff, another request fails fast without a new container.
	fails := svc.Stats.StartFails.Load()
	if _, err := svc.Acquire(context.Background()); err == nil {
		t.Fatal("acquire after a failed start succeeded")
	}
	if got := svc.Stats.StartFails.Load(); got != fails {
		t.Errorf("a request within the backoff started another container (%d start failures, was %d)", got, fails)
	}
}

func TestQueueFullAndTimeoutAreDistinct(t *testing.T) {
	e := newEnv(t)
	s := e.scaler(scaler.Options{})
	defer closeScaler(t, s)
	cfg := e.config("queue")
	cfg.Concurrency = 1
	cfg.MaxInstances = 1
	cfg.QueueSize = 2
	svc, err := s.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hold, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Release()
	// A short queue timeout from now on; it is a scaling knob, so the
	// instance stays.
	cfg.QueueTimeout = 500 * time.Millisecond
	if _, err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	// Two waiters fill the queue and time out; a third is refused at once.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = svc.Acquire(context.Background()) }()
	}
	eventually(t, 5*time.Second, "waiters did not queue", func() bool { return svc.Snapshot().Queued == 2 })
	if _, err := svc.Acquire(context.Background()); !errors.Is(err, scaler.ErrQueueFull) {
		t.Errorf("third waiter: %v, want ErrQueueFull", err)
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, scaler.ErrQueueTimeout) {
			t.Errorf("waiter %d: %v, want ErrQueueTimeout", i, err)
		}
	}
}

func TestRestartAdoptsOrRemovesLeftovers(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("survivor")
	other := e.config("gone")

	// A first podcell runs two services and stops, keeping its containers.
	s1 := e.scaler(scaler.Options{KeepOnClose: true})
	a, _ := s1.Apply(cfg)
	b, _ := s1.Apply(other)
	for _, svc := range []*scaler.Service{a, b} {
		l, err := svc.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
	}
	kept := a.Snapshot()
	closeScaler(t, s1)
	if n := e.running(); n != 2 {
		t.Fatalf("%d containers after a keep-on-close stop, want 2", n)
	}
	if nets := ownedNetworks(t, e.rt, e.owner); len(nets) != 2 {
		t.Fatalf("networks after a keep-on-close stop: %v, want the 2 services'", nets)
	}
	if ifbs := ownedIFBs(t, e.owner); len(ifbs) != 2 {
		t.Fatalf("shaping devices after a keep-on-close stop: %v, want the 2 instances'", ifbs)
	}
	// As if the first podcell crashed after removing a container and
	// before removing its shaping device.
	crashed := &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: "ifbdeadbeef0000"}}
	if err := netlink.LinkAdd(crashed); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetAlias(crashed, "podcell owner="+e.owner+" service=gone container="+e.owner+"-gone-00000000 id=deadbeef0000ffff"); err != nil {
		netlink.LinkDel(crashed)
		t.Fatal(err)
	}

	// The next podcell only declares "survivor": its instance is adopted,
	// the other service's container is removed.
	s2 := e.scaler(scaler.Options{})
	svc, err := s2.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.running(); n != 1 {
		t.Errorf("%d containers after reconcile, want the adopted 1", n)
	}
	// The adopted service keeps its network; the other one's is removed.
	if nets := ownedNetworks(t, e.rt, e.owner); len(nets) != 1 || nets[0].Labels[scaler.LabelService] != "survivor" {
		t.Errorf("networks after reconcile: %v, want survivor's only", nets)
	}
	// The adopted instance keeps its shaping device; the removed one's and
	// the crashed run's leftover are gone.
	if ifbs := ownedIFBs(t, e.owner); len(ifbs) != 1 || ifbs[0] == crashed.Name {
		t.Errorf("shaping devices after reconcile: %v, want the adopted instance's only", ifbs)
	}
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	keptAddr := ""
	for _, i := range kept.Instances {
		if i.State == "ready" {
			keptAddr = i.Addr
		}
	}
	if l.Wake != scaler.WakeNone || l.Addr != keptAddr {
		t.Errorf("request after restart: wake %s addr %s; want the adopted instance without a cold start", l.Wake, l.Addr)
	}
	closeScaler(t, s2)
	if n := e.running(); n != 0 {
		t.Errorf("%d containers left after close, want 0", n)
	}
}

func TestRolloverOnNewRevision(t *testing.T) {
	e := newEnv(t)
	s := e.scaler(scaler.Options{})
	defer closeScaler(t, s)
	cfg := e.config("roll")
	cfg.Env = map[string]string{"GREETING": "v1"}
	svc, _ := s.Apply(cfg)
	l, err := svc.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	cfg.Env = map[string]string{"GREETING": "v2"}
	if _, err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	// Requests keep succeeding during the rollover and end on v2.
	eventually(t, 20*time.Second, "traffic did not move to the new revision", func() bool {
		l, err := svc.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		code, body := get(t, l.Addr, "/")
		if code != 200 {
			t.Fatalf("during rollover: %d", code)
		}
		return strings.HasPrefix(body, "v2 ")
	})
	eventually(t, 20*time.Second, "the old instance was not removed", func() bool {
		snap := svc.Snapshot()
		for _, i := range snap.Instances {
			if i.Revision != snap.Revision {
				return false
			}
		}
		return e.running() == 1
	})
}

// TestStartHintLoopback: an app that listens on 127.0.0.1 only starts and
// never answers the gateway. podcell says so while the start still waits
// (InstanceSlow, from what the instance's namespace listens on), and the
// failed start's reason carries the hint.
func TestStartHintLoopback(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{}
	s := e.scaler(scaler.Options{Observer: rec})
	defer closeScaler(t, s)
	cfg := e.config("loopback")
	cfg.Env = map[string]string{"HELLO_LISTEN_HOST": "127.0.0.1"}
	cfg.StartTimeout = 8 * time.Second
	cfg.QueueTimeout = 20 * time.Second
	svc, err := s.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = svc.Try(context.Background(), func(string) error { return nil })
	var se *scaler.StartError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a StartError", err)
	}
	const hint = "the app listens on 127.0.0.1:8080 only, which the gateway cannot reach: the app must listen on 0.0.0.0 or :: at $PORT (8080)"
	if !strings.Contains(se.Reason, hint) {
		t.Errorf("start failure reason %q lacks the hint", se.Reason)
	}
	rec.mu.Lock()
	calls := strings.Join(rec.calls, "\n")
	rec.mu.Unlock()
	// The hint came before the start gave up: it is in the calls before
	// the failure.
	slow, failed := strings.Index(calls, "slow loopback"), strings.Index(calls, "start failed loopback")
	if slow < 0 || failed < 0 || slow > failed || !strings.Contains(calls, hint) {
		t.Errorf("observer calls, want the hint before the failure:\n%s", calls)
	}
}
