package scaler

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeRuntime is an in-memory Runtime for unit tests. Every container gets
// its own 127.0.0.1 port, reserved at Create and not listened on: the TCP
// prober is refused ("not ready yet") until the test calls ready(id), or
// until Start when autoReady is set. exit(id, code) makes a container die
// the way Podman reports it: Inspect says exited and Events delivers "died".
type fakeRuntime struct {
	t *testing.T

	mu         sync.Mutex
	autoReady  bool
	logs       []string                 // what Logs returns for every container
	createGate chan struct{}            // when set, Create waits until it is closed
	createErr  error                    // when set, Create fails with it (counted)
	stopGates  map[string]chan struct{} // Stop of these containers waits until closed
	nextID     int
	containers map[string]*fakeContainer
	created    []string // ids in creation order
	started    []string // ids in start order (a restart repeats the id)
	subs       []*fakeSub
	calls      fakeCalls
	// changed is closed (and replaced) when a container writes output,
	// exits or is removed, waking FollowLogs.
	changed chan struct{}
}

type fakeCalls struct {
	Create, Start, Pause, Unpause, Stop, Remove int
}

type fakeContainer struct {
	id       string
	spec     ContainerSpec
	state    string
	addr     string
	ln       net.Listener
	exitCode int
	removed  bool
	output   []LogLine // what FollowLogs reads; see write
}

type fakeSub struct {
	label, value string
	ch           chan Event
	closed       bool
}

func newFake(t *testing.T) *fakeRuntime {
	f := &fakeRuntime{t: t, containers: map[string]*fakeContainer{}, changed: make(chan struct{})}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.containers {
			c.closeListener()
		}
	})
	return f
}

func (c *fakeContainer) closeListener() {
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
}

// listenLocked makes the container's port accept connections.
func (f *fakeRuntime) listenLocked(c *fakeContainer) {
	if c.ln != nil {
		return
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		f.t.Errorf("fake: listen on %s for %s: %v", c.addr, c.id, err)
		return
	}
	c.ln = ln
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
}

// emitLocked delivers ev to every subscriber whose label matches.
func (f *fakeRuntime) emitLocked(ev Event) {
	for _, s := range f.subs {
		if s.closed || ev.Labels[s.label] != s.value {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			panic("fake: event buffer full")
		}
	}
}

func (f *fakeRuntime) get(id string) (*fakeContainer, error) {
	c := f.containers[id]
	if c == nil || c.removed {
		return nil, fmt.Errorf("fake: no such container %q", id)
	}
	return c, nil
}

func (f *fakeRuntime) Host(context.Context) (HostInfo, error) {
	return HostInfo{Version: "fake", CgroupVersion: "v2", CPUs: 4, OCIRuntime: "fake"}, nil
}

func (f *fakeRuntime) Create(ctx context.Context, spec ContainerSpec) (string, error) {
	f.mu.Lock()
	gate := f.createGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	if err := f.createErr; err != nil {
		f.calls.Create++
		f.mu.Unlock()
		return "", err
	}
	f.mu.Unlock()
	// Reserve a port nobody listens on until the container is ready.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()

	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Create++
	f.nextID++
	id := fmt.Sprintf("fake%03d", f.nextID)
	spec.Labels = maps.Clone(spec.Labels)
	f.containers[id] = &fakeContainer{id: id, spec: spec, state: StateCreated, addr: addr}
	f.created = append(f.created, id)
	return id, nil
}

func (f *fakeRuntime) Start(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return err
	}
	f.calls.Start++
	f.started = append(f.started, id)
	c.state = StateRunning
	if f.autoReady {
		f.listenLocked(c)
	}
	return nil
}

func (f *fakeRuntime) Stop(ctx context.Context, id string, grace time.Duration) error {
	f.mu.Lock()
	gate := f.stopGates[id]
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Stop++
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if c.state == StateRunning || c.state == StatePaused {
		f.exitLocked(c, 143)
	}
	return nil
}

func (f *fakeRuntime) Pause(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Pause++
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if c.state != StateRunning {
		return fmt.Errorf("fake: pause %s: container is %s", id, c.state)
	}
	c.state = StatePaused
	return nil
}

func (f *fakeRuntime) Unpause(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Unpause++
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if c.state != StatePaused {
		return fmt.Errorf("fake: unpause %s: container is %s", id, c.state)
	}
	c.state = StateRunning
	return nil
}

func (f *fakeRuntime) Remove(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Remove++
	if c := f.containers[id]; c != nil {
		c.closeListener()
		c.removed = true
		f.notifyLocked()
	}
	return nil
}

func (f *fakeRuntime) Inspect(ctx context.Context, id string) (ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return ContainerInfo{}, err
	}
	return c.infoLocked(), nil
}

func (c *fakeContainer) infoLocked() ContainerInfo {
	info := ContainerInfo{ID: c.id, Name: c.spec.Name, State: c.state, Labels: maps.Clone(c.spec.Labels), ExitCode: c.exitCode}
	if c.state == StateRunning || c.state == StatePaused {
		info.Addr = c.addr
	}
	return info
}

func (f *fakeRuntime) List(ctx context.Context, label, value string) ([]ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ContainerInfo
	for _, id := range f.created {
		if c := f.containers[id]; !c.removed && c.spec.Labels[label] == value {
			out = append(out, c.infoLocked())
		}
	}
	return out, nil
}

func (f *fakeRuntime) Events(ctx context.Context, label, value string) (<-chan Event, error) {
	s := &fakeSub{label: label, value: value, ch: make(chan Event, 256)}
	f.mu.Lock()
	f.subs = append(f.subs, s)
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		s.closed = true
		close(s.ch)
	}()
	return s.ch, nil
}

func (f *fakeRuntime) Logs(ctx context.Context, id string, tail int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.containers[id]; !ok {
		return nil, fmt.Errorf("fake: no such container %q", id)
	}
	logs := f.logs
	if len(logs) > tail {
		logs = logs[len(logs)-tail:]
	}
	return slices.Clone(logs), nil
}

func (f *fakeRuntime) FollowLogs(ctx context.Context, id string, since time.Time, fn func(LogLine)) error {
	next := 0
	for {
		f.mu.Lock()
		c := f.containers[id]
		if c == nil {
			f.mu.Unlock()
			return fmt.Errorf("fake: no such container %q", id)
		}
		lines := slices.Clone(c.output[next:])
		next = len(c.output)
		ended := c.removed || hasExited(c.state)
		changed := f.changed
		f.mu.Unlock()
		for _, l := range lines {
			if !l.Time.Before(since) {
				fn(l)
			}
		}
		if ended {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

func (f *fakeRuntime) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Test controls.

// ready makes the container's port accept connections.
func (f *fakeRuntime) ready(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		f.t.Errorf("fake: ready: %v", err)
		return
	}
	f.listenLocked(c)
}

// exit makes a running container die with code.
func (f *fakeRuntime) exit(id string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		f.t.Errorf("fake: exit: %v", err)
		return
	}
	f.exitLocked(c, code)
}

func (f *fakeRuntime) exitLocked(c *fakeContainer, code int) {
	c.closeListener()
	c.state = StateExited
	c.exitCode = code
	f.notifyLocked()
	f.emitLocked(Event{ID: c.id, Action: "died", Labels: maps.Clone(c.spec.Labels), ExitCode: code, Time: time.Now()})
}

// write makes container id print text on stream ("stdout" or "stderr").
func (f *fakeRuntime) write(id, stream, text string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		f.t.Errorf("fake: write: %v", err)
		return
	}
	c.output = append(c.output, LogLine{Time: time.Now(), Stream: stream, Text: text})
	f.notifyLocked()
}

func (f *fakeRuntime) setAutoReady(on bool) {
	f.mu.Lock()
	f.autoReady = on
	f.mu.Unlock()
}

func (f *fakeRuntime) setLogs(lines ...string) {
	f.mu.Lock()
	f.logs = lines
	f.mu.Unlock()
}

func (f *fakeRuntime) setCreateGate(g chan struct{}) {
	f.mu.Lock()
	f.createGate = g
	f.mu.Unlock()
}

// holdStop makes Stop of container id wait until release is called.
func (f *fakeRuntime) holdStop(id string) (release func()) {
	g := make(chan struct{})
	f.mu.Lock()
	if f.stopGates == nil {
		f.stopGates = map[string]chan struct{}{}
	}
	f.stopGates[id] = g
	f.mu.Unlock()
	return func() { close(g) }
}

func (f *fakeRuntime) count() fakeCalls {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// startedIDs lists the ids passed to Start, in order.
func (f *fakeRuntime) startedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.started)
}

// addr is the host:port the container's app would listen on.
func (f *fakeRuntime) addr(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil {
		return c.addr
	}
	return ""
}

// leftovers lists the containers created and not removed.
func (f *fakeRuntime) leftovers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, id := range f.created {
		if !f.containers[id].removed {
			out = append(out, id)
		}
	}
	return out
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFakeRuntime checks the fake itself, so service tests can trust it.
func TestFakeRuntime(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFake(t)
	events, err := f.Events(ctx, LabelOwner, "me")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{LabelOwner: "me", LabelService: "svc"}
	id, err := f.Create(ctx, ContainerSpec{Name: "c1", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	labels[LabelService] = "changed after create"
	if err := f.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	info, err := f.Inspect(ctx, id)
	if err != nil || info.State != StateRunning || info.Addr == "" {
		t.Fatalf("Inspect after Start = %+v, %v; want running with an address", info, err)
	}
	p := prober{addr: info.Addr}
	if p.try(ctx) {
		t.Fatalf("port %s answers before ready", info.Addr)
	}
	f.ready(id)
	if !p.try(ctx) {
		t.Fatalf("port %s does not answer after ready", info.Addr)
	}
	if l, _ := f.List(ctx, LabelOwner, "me"); len(l) != 1 || l[0].ID != id {
		t.Fatalf("List = %+v, want just %s", l, id)
	}
	if l, _ := f.List(ctx, LabelOwner, "other"); len(l) != 0 {
		t.Fatalf("List of another owner = %+v, want none", l)
	}

	f.exit(id, 3)
	select {
	case ev := <-events:
		if ev.ID != id || ev.Action != "died" || ev.ExitCode != 3 || ev.Labels[LabelService] != "svc" {
			t.Fatalf("event = %+v, want died of %s with code 3 and the spec's labels", ev, id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no died event")
	}
	if info, _ := f.Inspect(ctx, id); info.State != StateExited || info.ExitCode != 3 {
		t.Fatalf("Inspect after exit = %+v, want exited with code 3", info)
	}
	if p.try(ctx) {
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
	if got := f.leftovers(); len(got) != 0 {
		t.Fatalf("leftovers = %v", got)
	}
	if got, want := f.count(), (fakeCalls{Create: 1, Start: 1, Remove: 2}); got != want {
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
