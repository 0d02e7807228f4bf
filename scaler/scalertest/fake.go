package scalertest

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
)

// Fake is an in-memory scaler.Runtime for tests of policy and of what sits
// above the scaler (no Podman, nothing built). It simulates what the scaler
// relies on: each container gets its own 127.0.0.1 port, reserved at Create
// and not listened on, so the scaler's TCP readiness probe is refused ("not
// ready yet") until the test calls Ready(id), or until Start when
// SetAutoReady(true); Exit(id, code) makes a container die the way Podman
// reports it (Inspect says exited, Events delivers "died", the port closes);
// Write feeds FollowLogs; List and Events filter by label like Podman.
//
// It does not simulate what runs inside: a ready port accepts connections
// and closes them at once, or serves the handler SetHTTP gives every
// container (there is no per-container app). Images are not checked (any
// Image creates); Limits, Cpuset, UserNS, Command and Env are stored (see
// Spec) but have no effect; an OOM kill is only exit code 137; pause and
// unpause only flip the state (a paused port still answers). Every call
// returns at once unless a test holds it (SetCreateGate, HoldStop) or makes
// it fail (FailCreate, FailStart); Refuse closes a port with no event.
type Fake struct {
	t testing.TB

	mu         sync.Mutex
	autoReady  bool
	handler    http.Handler             // what ready containers serve (SetHTTP)
	logs       []string                 // what Logs returns for every container
	createGate chan struct{}            // when set, Create waits until it is closed
	createErr  error                    // when set, Create fails with it (counted)
	startErr   error                    // when set, Start fails with it (counted)
	stopGates  map[string]chan struct{} // Stop of these containers waits until closed
	nextID     int
	containers map[string]*fakeContainer
	created    []string // ids in creation order
	started    []string // ids in start order (a restart repeats the id)
	subs       []*fakeSub
	calls      Calls
	// changed is closed (and replaced) when a container writes output,
	// exits or is removed, waking FollowLogs.
	changed chan struct{}
}

// Calls counts the Runtime calls a Fake received.
type Calls struct {
	Create, Init, Start, Pause, Unpause, Stop, Remove int
}

type fakeContainer struct {
	id       string
	spec     scaler.ContainerSpec
	state    string
	addr     string
	ln       net.Listener
	srv      *http.Server // with SetHTTP
	exitCode int
	removed  bool
	output   []scaler.LogLine // what FollowLogs reads; see write
	quota    int64            // CPU quota: the spec's (its start boost, if any), then SetCPU's
}

// pid is the container's process id as Inspect reports it while running: a
// number of its own per container.
func (c *fakeContainer) pid() int {
	n, _ := strconv.Atoi(strings.TrimPrefix(c.id, "fake"))
	return 1000 + n
}

type fakeSub struct {
	label, value string
	ch           chan scaler.Event
	closed       bool
}

// NewFake returns an empty fake runtime; t's cleanup closes the ports of
// the containers that still listen.
func NewFake(t testing.TB) *Fake {
	f := &Fake{t: t, containers: map[string]*fakeContainer{}, changed: make(chan struct{})}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.containers {
			c.closeListener()
		}
	})
	return f
}

// closeListener closes the container's port, and the connections its
// HTTP server holds.
func (c *fakeContainer) closeListener() {
	if c.srv != nil {
		c.srv.Close()
		c.srv = nil
	}
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
}

// listenLocked makes the container's port accept connections.
func (f *Fake) listenLocked(c *fakeContainer) {
	if c.ln != nil {
		return
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		f.t.Errorf("fake: listen on %s for %s: %v", c.addr, c.id, err)
		return
	}
	c.ln = ln
	if f.handler != nil {
		c.srv = &http.Server{Handler: f.handler}
		go c.srv.Serve(ln)
		return
	}
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
func (f *Fake) emitLocked(ev scaler.Event) {
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

func (f *Fake) get(id string) (*fakeContainer, error) {
	c := f.containers[id]
	if c == nil || c.removed {
		return nil, fmt.Errorf("fake: no such container %q", id)
	}
	return c, nil
}

func (f *Fake) Host(context.Context) (scaler.HostInfo, error) {
	return scaler.HostInfo{Version: "fake", CgroupVersion: "v2", CPUs: 4, OCIRuntime: "fake"}, nil
}

func (f *Fake) Create(ctx context.Context, spec scaler.ContainerSpec) (string, error) {
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
	quota := spec.Limits.CPUQuota
	if spec.Limits.StartCPUQuota > 0 {
		quota = spec.Limits.StartCPUQuota
	}
	f.containers[id] = &fakeContainer{id: id, spec: spec, state: scaler.StateCreated, addr: addr, quota: quota}
	f.created = append(f.created, id)
	return id, nil
}

// Init makes a created container initialized, as Podman's init does.
func (f *Fake) Init(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return err
	}
	f.calls.Init++
	if c.state != scaler.StateCreated {
		return fmt.Errorf("fake: init %s: container is %s", id, c.state)
	}
	c.state = scaler.StateInitialized
	return nil
}

func (f *Fake) Start(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return err
	}
	f.calls.Start++
	if f.startErr != nil {
		return f.startErr
	}
	f.started = append(f.started, id)
	c.state = scaler.StateRunning
	if f.autoReady {
		f.listenLocked(c)
	}
	return nil
}

func (f *Fake) Stop(ctx context.Context, id string, grace time.Duration) error {
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
	if c.state == scaler.StateRunning || c.state == scaler.StatePaused {
		f.exitLocked(c, 143)
	}
	return nil
}

func (f *Fake) Pause(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Pause++
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if c.state != scaler.StateRunning {
		return fmt.Errorf("fake: pause %s: container is %s", id, c.state)
	}
	c.state = scaler.StatePaused
	return nil
}

func (f *Fake) Unpause(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Unpause++
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if c.state != scaler.StatePaused {
		return fmt.Errorf("fake: unpause %s: container is %s", id, c.state)
	}
	c.state = scaler.StateRunning
	return nil
}

func (f *Fake) Remove(ctx context.Context, id string) error {
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

func (f *Fake) Inspect(ctx context.Context, id string) (scaler.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return scaler.ContainerInfo{}, err
	}
	return c.infoLocked(), nil
}

func (c *fakeContainer) infoLocked() scaler.ContainerInfo {
	info := scaler.ContainerInfo{ID: c.id, Name: c.spec.Name, State: c.state, Labels: maps.Clone(c.spec.Labels), ExitCode: c.exitCode}
	if c.state == scaler.StateRunning || c.state == scaler.StatePaused || c.state == scaler.StateInitialized {
		info.Addr = c.addr
		info.Pid = c.pid()
	}
	return info
}

// SetCPU records the quota a running container was given (see CPUQuota).
func (f *Fake) SetCPU(ctx context.Context, id string, pid int, quota, period int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if c.state != scaler.StateRunning || pid != c.pid() {
		return fmt.Errorf("set cpu of %s: not running as pid %d", id, pid)
	}
	c.quota = quota
	return nil
}

// CPUQuota is a container's CPU quota: the one it was created with
// (its start boost, if any) until SetCPU changes it.
func (f *Fake) CPUQuota(id string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil {
		return c.quota
	}
	return 0
}

func (f *Fake) List(ctx context.Context, label, value string) ([]scaler.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []scaler.ContainerInfo
	for _, id := range f.created {
		if c := f.containers[id]; !c.removed && c.spec.Labels[label] == value {
			out = append(out, c.infoLocked())
		}
	}
	return out, nil
}

func (f *Fake) Events(ctx context.Context, label, value string) (<-chan scaler.Event, error) {
	s := &fakeSub{label: label, value: value, ch: make(chan scaler.Event, 256)}
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

func (f *Fake) Logs(ctx context.Context, id string, tail int) ([]string, error) {
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

func (f *Fake) FollowLogs(ctx context.Context, id string, since time.Time, fn func(scaler.LogLine)) error {
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
		ended := c.removed || (c.state == scaler.StateExited || c.state == scaler.StateStopped)
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

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Test controls.

// Ready makes the container's port accept connections: the scaler's probe
// then finds it ready.
func (f *Fake) Ready(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		f.t.Errorf("fake: ready: %v", err)
		return
	}
	f.listenLocked(c)
}

// Exit makes a running container die with code (137: as the OOM killer
// leaves it), as Podman reports it: Inspect says exited, Events delivers
// "died" and the port closes.
func (f *Fake) Exit(id string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		f.t.Errorf("fake: exit: %v", err)
		return
	}
	f.exitLocked(c, code)
}

func (f *Fake) exitLocked(c *fakeContainer, code int) {
	f.exitQuietlyLocked(c, code)
	f.emitLocked(scaler.Event{ID: c.id, Action: "died", Labels: maps.Clone(c.spec.Labels), ExitCode: code, Time: time.Now()})
}

func (f *Fake) exitQuietlyLocked(c *fakeContainer, code int) {
	c.closeListener()
	c.state = scaler.StateExited
	c.exitCode = code
	f.notifyLocked()
}

// ExitLate makes a running container die with code as Exit does, except
// that its "died" event waits until the test calls deliver: Podman's event
// comes late, and the scaler meets the exit first as a refused connection
// or in Inspect.
func (f *Fake) ExitLate(id string, code int) (deliver func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		f.t.Errorf("fake: exit: %v", err)
		return func() {}
	}
	f.exitQuietlyLocked(c, code)
	ev := scaler.Event{ID: c.id, Action: "died", Labels: maps.Clone(c.spec.Labels), ExitCode: code, Time: time.Now()}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.emitLocked(ev)
	}
}

// Write makes container id print text on stream ("stdout" or "stderr"),
// for FollowLogs.
func (f *Fake) Write(id, stream, text string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		f.t.Errorf("fake: write: %v", err)
		return
	}
	c.output = append(c.output, scaler.LogLine{Time: time.Now(), Stream: stream, Text: text})
	f.notifyLocked()
}

// SetHTTP makes the containers that get ready from now on serve h over
// HTTP on their port, as the app would (nil: accept connections and close
// them at once). h tells instances apart by the request context's
// http.LocalAddrContextKey, the instance's address.
func (f *Fake) SetHTTP(h http.Handler) {
	f.mu.Lock()
	f.handler = h
	f.mu.Unlock()
}

// Refuse closes container id's port while the container still runs, as
// when its app crashed and Podman's "died" event has not come yet (or never
// comes): connections are refused, and the scaler, which still counts the
// instance ready, learns it only from a request.
func (f *Fake) Refuse(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		f.t.Errorf("fake: refuse: %v", err)
		return
	}
	c.closeListener()
}

// SetAutoReady makes every container started from now on ready at once.
func (f *Fake) SetAutoReady(on bool) {
	f.mu.Lock()
	f.autoReady = on
	f.mu.Unlock()
}

// SetLogs sets what Logs returns for every container (the lines a crash
// or a failed start reports).
func (f *Fake) SetLogs(lines ...string) {
	f.mu.Lock()
	f.logs = lines
	f.mu.Unlock()
}

// SetCreateGate makes Create wait until g is closed (nil: no wait).
func (f *Fake) SetCreateGate(g chan struct{}) {
	f.mu.Lock()
	f.createGate = g
	f.mu.Unlock()
}

// FailCreate makes every Create fail with err until FailCreate(nil), as a
// missing image does.
func (f *Fake) FailCreate(err error) {
	f.mu.Lock()
	f.createErr = err
	f.mu.Unlock()
}

// FailStart makes every Start fail with err until FailStart(nil), as an
// image whose entrypoint does not exist does.
func (f *Fake) FailStart(err error) {
	f.mu.Lock()
	f.startErr = err
	f.mu.Unlock()
}

// HoldStop makes Stop of container id wait until release is called.
func (f *Fake) HoldStop(id string) (release func()) {
	g := make(chan struct{})
	f.mu.Lock()
	if f.stopGates == nil {
		f.stopGates = map[string]chan struct{}{}
	}
	f.stopGates[id] = g
	f.mu.Unlock()
	return func() { close(g) }
}

// Calls counts the calls so far.
func (f *Fake) Calls() Calls {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// CreatedIDs lists the ids Create returned, in order.
func (f *Fake) CreatedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.created)
}

// StartedIDs lists the ids passed to Start (and started), in order.
func (f *Fake) StartedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.started)
}

// Spec is what container id was created with (the scaler's image, env,
// labels, limits...); false if no such container was created.
func (f *Fake) Spec(id string) (scaler.ContainerSpec, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil {
		spec := c.spec
		spec.Env, spec.Labels = maps.Clone(spec.Env), maps.Clone(spec.Labels)
		return spec, true
	}
	return scaler.ContainerSpec{}, false
}

// Addr is the host:port the container's app would listen on.
func (f *Fake) Addr(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil {
		return c.addr
	}
	return ""
}

// Leftovers lists the containers created and not removed, in creation order.
func (f *Fake) Leftovers() []string {
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

var _ scaler.Runtime = (*Fake)(nil)
