package scalertest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
)

// answers says whether something accepts connections on addr.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestFakeRuntime checks the fake itself, so service tests can trust it.
func TestFakeRuntime(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := NewFake(t)
	events, err := f.Events(ctx, scaler.LabelOwner, "me")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{scaler.LabelOwner: "me", scaler.LabelService: "svc"}
	id, err := f.Create(ctx, scaler.ContainerSpec{Name: "c1", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	labels[scaler.LabelService] = "changed after create"
	if err := f.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	info, err := f.Inspect(ctx, id)
	if err != nil || info.State != scaler.StateRunning || info.Addr == "" {
		t.Fatalf("Inspect after Start = %+v, %v; want running with an address", info, err)
	}
	if answers(info.Addr) {
		t.Fatalf("port %s answers before ready", info.Addr)
	}
	f.Ready(id)
	if !answers(info.Addr) {
		t.Fatalf("port %s does not answer after ready", info.Addr)
	}
	if l, _ := f.List(ctx, scaler.LabelOwner, "me"); len(l) != 1 || l[0].ID != id {
		t.Fatalf("List = %+v, want just %s", l, id)
	}
	if l, _ := f.List(ctx, scaler.LabelOwner, "other"); len(l) != 0 {
		t.Fatalf("List of another owner = %+v, want none", l)
	}

	f.Exit(id, 3)
	select {
	case ev := <-events:
		if ev.ID != id || ev.Action != "died" || ev.ExitCode != 3 || ev.Labels[scaler.LabelService] != "svc" {
			t.Fatalf("event = %+v, want died of %s with code 3 and the spec's labels", ev, id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no died event")
	}
	if info, _ := f.Inspect(ctx, id); info.State != scaler.StateExited || info.ExitCode != 3 {
		t.Fatalf("Inspect after exit = %+v, want exited with code 3", info)
	}
	if answers(info.Addr) {
		t.Fatal("port still answers after exit")
	}

	if err := f.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(ctx, id); err != nil {
		t.Fatalf("removing a removed container: %v, want nil", err)
	}
	if _, err := f.Inspect(ctx, id); err == nil {
		t.Fatal("Inspect of a removed container succeeded")
	}
	if got := f.Leftovers(); len(got) != 0 {
		t.Fatalf("leftovers = %v", got)
	}
	if got, want := f.Calls(), (Calls{Create: 1, Start: 1, Remove: 2}); got != want {
		t.Fatalf("calls = %+v, want %+v", got, want)
	}

	cancel()
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("unexpected event after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event channel not closed after its context ended")
	}
}

func TestFakeFollowLogs(t *testing.T) {
	f := NewFake(t)
	ctx := context.Background()
	id, err := f.Create(ctx, scaler.ContainerSpec{Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.Write(id, "stdout", "before")
	since := time.Now()
	f.Write(id, "stderr", "after")

	got := make(chan scaler.LogLine, 10)
	done := make(chan error, 1)
	go func() { done <- f.FollowLogs(ctx, id, since, func(l scaler.LogLine) { got <- l }) }()
	next := func() scaler.LogLine {
		t.Helper()
		select {
		case l := <-got:
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no line")
			return scaler.LogLine{}
		}
	}
	if l := next(); l.Stream != "stderr" || l.Text != "after" {
		t.Errorf("first line %+v, want stderr's \"after\" (the one before since is skipped)", l)
	}
	f.Write(id, "stdout", "live")
	if l := next(); l.Stream != "stdout" || l.Text != "live" {
		t.Errorf("second line %+v, want stdout's \"live\"", l)
	}
	f.Exit(id, 0)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("FollowLogs after exit: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FollowLogs still follows an exited container")
	}

	// A canceled follow returns ctx's error.
	id2, _ := f.Create(ctx, scaler.ContainerSpec{Name: "c2"})
	f.Start(ctx, id2)
	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- f.FollowLogs(cctx, id2, time.Time{}, func(scaler.LogLine) {}) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("canceled FollowLogs: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FollowLogs ignores its context")
	}
}

// FailCreate and FailStart fail every call until cleared; Spec and
// CreatedIDs tell what was created, with copies a test may keep.
func TestFakeFailuresAndRecords(t *testing.T) {
	ctx := context.Background()
	f := NewFake(t)
	boom := errors.New("image not known")
	f.FailCreate(boom)
	if _, err := f.Create(ctx, scaler.ContainerSpec{Name: "c0"}); !errors.Is(err, boom) {
		t.Fatalf("Create with FailCreate: %v, want %v", err, boom)
	}
	f.FailCreate(nil)
	env := map[string]string{"A": "1"}
	id, err := f.Create(ctx, scaler.ContainerSpec{Name: "c1", Image: "img", Env: env})
	if err != nil {
		t.Fatal(err)
	}
	f.FailStart(boom)
	if err := f.Start(ctx, id); !errors.Is(err, boom) {
		t.Fatalf("Start with FailStart: %v, want %v", err, boom)
	}
	if got := f.StartedIDs(); len(got) != 0 {
		t.Fatalf("StartedIDs after a failed start = %v, want none", got)
	}
	f.FailStart(nil)
	if err := f.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	spec, ok := f.Spec(id)
	if !ok || spec.Image != "img" || spec.Env["A"] != "1" {
		t.Fatalf("Spec(%s) = %+v, %v; want the spec it was created with", id, spec, ok)
	}
	spec.Env["A"] = "changed"
	if again, _ := f.Spec(id); again.Env["A"] != "1" {
		t.Fatal("changing a returned Spec changed the fake's")
	}
	if got := f.CreatedIDs(); len(got) != 1 || got[0] != id {
		t.Fatalf("CreatedIDs = %v, want [%s]", got, id)
	}
	if got, want := f.Calls(), (Calls{Create: 2, Start: 2}); got != want {
		t.Fatalf("calls = %+v, want %+v", got, want)
	}
}

// With SetHTTP a ready container serves HTTP; Refuse closes its port while
// the container still runs, with no event.
func TestFakeHTTPAndRefuse(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := NewFake(t)
	f.SetAutoReady(true)
	f.SetHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Context().Value(http.LocalAddrContextKey).(net.Addr).String())
	}))
	events, _ := f.Events(ctx, scaler.LabelOwner, "me")
	id, err := f.Create(ctx, scaler.ContainerSpec{Name: "c1", Labels: map[string]string{scaler.LabelOwner: "me"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	addr := f.Addr(id)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != addr {
		t.Fatalf("answer %q, want the instance's address %s", body, addr)
	}
	f.Refuse(id)
	if answers(addr) {
		t.Fatal("port still answers after Refuse")
	}
	if info, _ := f.Inspect(ctx, id); info.State != scaler.StateRunning {
		t.Fatalf("after Refuse the container is %s, want still running", info.State)
	}
	select {
	case ev := <-events:
		t.Fatalf("event %+v after Refuse, want none", ev)
	default:
	}
}
