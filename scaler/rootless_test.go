package scaler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// rootlessEnv connects to the rootless Podman API at $PODCELL_ROOTLESS_URI
// (scripts/setup-rootless.sh starts one and prints its URI) and builds the
// hello image there: a rootless user has its own image store, and
// scalertest.Hello's once-per-process build only covers the rootful one.
func rootlessEnv(t *testing.T) *env {
	t.Helper()
	uri := os.Getenv("PODCELL_ROOTLESS_URI")
	if uri == "" {
		t.Skip("PODCELL_ROOTLESS_URI is not set: run scripts/setup-rootless.sh as root and export PODCELL_ROOTLESS_URI to the URI it prints (make test does both)")
	}
	rt, err := scaler.NewPodman(context.Background(), uri)
	if err != nil {
		t.Fatalf("PODCELL_ROOTLESS_URI is set but: %v (run scripts/setup-rootless.sh as root)", err)
	}
	start := time.Now()
	if err := scalertest.BuildHello(context.Background(), rt); err != nil {
		t.Fatalf("build hello image in the rootless store: %v", err)
	}
	t.Logf("hello image ready in the rootless store in %s", time.Since(start).Round(time.Millisecond))
	return envFor(t, rt, scalertest.HelloImage, "podcelltest-rootless-")
}

// TestRootless runs a service through rootless Podman: the refusal where
// limits cannot be enforced, a cold start reached through a port published
// on 127.0.0.1, the read-only sandbox, pausing (which rootless Podman cannot
// do on cgroup v1), the HTTP readiness probe, scale to zero and Close.
func TestRootless(t *testing.T) {
	e := rootlessEnv(t)
	ctx := context.Background()
	host, err := e.rt.Host(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rootless host: %+v", host)
	if !host.Rootless {
		t.Fatalf("the Podman API at %s is not rootless", e.rt.URI())
	}
	cgroupV1 := host.CgroupVersion == "v1"
	if cgroupV1 == host.LimitsEnforced() {
		t.Errorf("rootless on cgroup %s: LimitsEnforced() = %v", host.CgroupVersion, host.LimitsEnforced())
	}

	// Without allow_unenforced_limits, a host that cannot enforce limits
	// refuses services.
	if cgroupV1 {
		s := e.scaler(scaler.Options{})
		_, err := s.Apply(e.config("refused"))
		closeScaler(t, s)
		if err == nil || !strings.Contains(err.Error(), "allow_unenforced_limits") {
			t.Fatalf("rootless on cgroup v1 without allow_unenforced_limits: err %v, want a refusal naming allow_unenforced_limits", err)
		}
	}

	s := e.scaler(scaler.Options{AllowUnenforcedLimits: cgroupV1})
	closed := false
	defer func() {
		if !closed {
			closeScaler(t, s)
		}
	}()
	cfg := e.config("rootless")
	cfg.PauseAfter = 300 * time.Millisecond
	svc, err := s.Apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.running(); n != 0 {
		t.Fatalf("%d containers run before any request, want 0", n)
	}

	// From zero: the app is reached on a port published on 127.0.0.1.
	l, err := svc.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold start: acquire waited %s, addr %s", l.Waited, l.Addr)
	if ip, _, err := net.SplitHostPort(l.Addr); err != nil || ip != "127.0.0.1" {
		t.Errorf("addr %q, want a port published on 127.0.0.1", l.Addr)
	}
	if l.Wake != scaler.WakeStart {
		t.Errorf("first request: wake %s, want a cold start", l.Wake)
	}
	if code, body := get(t, l.Addr, "/"); code != 200 || !strings.HasPrefix(body, "hello from ") {
		t.Fatalf("GET /: %d %q", code, body)
	}

	// The sandbox: read-only root, writable /tmp, no capabilities.
	if code, body := get(t, l.Addr, "/write?path=/x"); code != 500 || !strings.Contains(body, "read-only file system") {
		t.Errorf("write to /: %d %q, want a read-only error", code, body)
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
	if lim["CapEff"] != "0000000000000000" || lim["NoNewPrivs"] != "1" {
		t.Errorf("capabilities %s, NoNewPrivs %s; want none and 1", lim["CapEff"], lim["NoNewPrivs"])
	}
	if strings.HasPrefix(lim["uid_map"], "0 0 ") {
		t.Errorf("uid_map %q: container root is host root", lim["uid_map"])
	}
	// LimitsEnforced must tell the truth: on cgroup v1 rootless Podman
	// accepts the 256 MB limit and sets none.
	if mem := fmt.Sprint(256 << 20); (lim["memory"] == mem) != host.LimitsEnforced() {
		t.Errorf("memory limit in the container %q, LimitsEnforced() %v", lim["memory"], host.LimitsEnforced())
	}
	l.Release()

	// Pausing when idle. The freezer needs a cgroup, and rootless
	// containers on cgroup v1 have none: Podman answers "can not pause
	// containers on rootless containers with cgroup V1: this container does
	// not have a cgroup". The scaler knows (HostInfo.CanPause) and does not
	// pause there; the instance keeps running.
	var id string
	for _, i := range svc.Snapshot().Instances {
		if i.Addr == l.Addr {
			id = i.ID
		}
	}
	if cgroupV1 {
		time.Sleep(time.Second) // several pause_after periods
		if n := svc.Stats.Pauses.Load(); n != 0 {
			t.Fatalf("%d pauses succeeded on rootless cgroup v1; this test expects none", n)
		}
		if info, err := e.rt.Inspect(ctx, id); err != nil || info.State != scaler.StateRunning {
			t.Errorf("after failed pauses: state %q (%v), want running", info.State, err)
		}
		err := e.rt.Pause(ctx, id)
		t.Logf("pause on rootless cgroup v1: %v", err)
		if err == nil || !strings.Contains(err.Error(), "cgroup") {
			t.Errorf("pause on rootless cgroup v1: err %v, want Podman's no-cgroup refusal", err)
		}
		l2, err := svc.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		code, _ := get(t, l2.Addr, "/")
		l2.Release()
		if code != 200 || l2.Wake != scaler.WakeNone || l2.Addr != l.Addr {
			t.Errorf("after failed pauses: code %d wake %s addr %s (was %s), want 200 from the running instance", code, l2.Wake, l2.Addr, l.Addr)
		}
	} else {
		eventually(t, 10*time.Second, "instance was not paused", func() bool { return svc.Snapshot().Count("paused") == 1 })
		if info, err := e.rt.Inspect(ctx, id); err != nil || info.State != scaler.StatePaused {
			t.Errorf("podman reports state %q (%v), want paused", info.State, err)
		}
		l2, err := svc.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		code, _ := get(t, l2.Addr, "/")
		l2.Release()
		if code != 200 || l2.Wake != scaler.WakeResume || l2.Addr != l.Addr {
			t.Errorf("after pause: code %d wake %s addr %s (was %s), want 200 from the resumed instance", code, l2.Wake, l2.Addr, l.Addr)
		}
		t.Logf("resume: acquire waited %s", l2.Waited)
	}

	// Back to zero after idle_timeout, with pause_after still set: where
	// pausing cannot work the scaler turns it off, so the idle clock runs on.
	cfg.IdleTimeout = 2 * time.Second
	if cfg.PauseAfter <= 0 || cfg.PauseAfter >= cfg.IdleTimeout {
		cfg.PauseAfter = 300 * time.Millisecond
	}
	if _, err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	idleFrom := time.Now()
	eventually(t, 20*time.Second, "the idle instance was not stopped", func() bool {
		return svc.Snapshot().Up() == 0 && e.running() == 0
	})
	t.Logf("scaled to zero %s after idle_timeout was set to %s", time.Since(idleFrom).Round(time.Millisecond), cfg.IdleTimeout)

	// Readiness is an HTTP answer: the rootless port forwarder accepts TCP
	// connections before the app listens, so a TCP probe would hand out the
	// address of an app that is still starting.
	slow := e.config("slow")
	slow.Env = map[string]string{"HELLO_START_DELAY": "1500ms"}
	ssvc, err := s.Apply(slow)
	if err != nil {
		t.Fatal(err)
	}
	l3, err := ssvc.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, l3.Addr, "/")
	l3.Release()
	if code != 200 || l3.Waited < 1500*time.Millisecond {
		t.Errorf("app that listens after 1.5 s: acquire waited %s, then %d %q; want 200 after at least 1.5 s", l3.Waited, code, body)
	}
	t.Logf("app with a 1.5 s start delay: acquire waited %s", l3.Waited)

	// Close removes every container, standbys included.
	closed = true
	closeScaler(t, s)
	list, err := e.rt.List(ctx, scaler.LabelOwner, e.owner)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		t.Errorf("left after close: %s (%s)", c.Name, c.State)
	}
}
