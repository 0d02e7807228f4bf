package scaler_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
	var b [4]byte
	rand.Read(b[:])
	e := &env{t: t, rt: rt, image: scalertest.HelloImage, owner: "podcelltest-rootless-" + hex.EncodeToString(b[:])}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := rt.List(ctx, scaler.LabelOwner, e.owner)
		if err != nil {
			t.Errorf("list leftovers: %v", err)
			return
		}
		for _, c := range list {
			rt.Remove(ctx, c.ID)
		}
	})
	return e
}

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

	// Without allow_unenforced_limits a host that cannot enforce limits
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
	t.Logf("cold start: acquire waited %s (wake %s), addr %s", l.Waited, l.Wake, l.Addr)
	if ip, _, err := net.SplitHostPort(l.Addr); err != nil || ip != "127.0.0.1" {
		t.Errorf("addr %q, want a port published on 127.0.0.1", l.Addr)
	}
	if l.Wake != scaler.WakeStart {
		t.Errorf("first request: wake %s, want a cold start", l.Wake)
	}
	if code, body := get(t, l.Addr, "/"); code != 200 || !strings.HasPrefix(body, "hello from ") {
		t.Fatalf("GET /: %d %q", code, body)
	}

	// The sandbox: read-only root, writable /tmp.
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
		t.Errorf("capabilities %s NoNewPrivs %s, want none and 1", lim["CapEff"], lim["NoNewPrivs"])
	}
	l.Release()

	// Pause when idle.
	time.Sleep(3 * time.Second)
	snap := svc.Snapshot()
	t.Logf("after idle: %+v pauses=%d", snap, svc.Stats.Pauses.Load())
	list, _ := e.rt.List(ctx, scaler.LabelOwner, e.owner)
	for _, c := range list {
		t.Logf("container %s state %s", c.Name, c.State)
	}
	l2, err := svc.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	code, _ := get(t, l2.Addr, "/")
	l2.Release()
	t.Logf("after idle: code %d wake %s waited %s", code, l2.Wake, l2.Waited)

	closeScaler(t, s)
	list, err = e.rt.List(ctx, scaler.LabelOwner, e.owner)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("%d containers left after close, want 0", len(list))
	}
}
