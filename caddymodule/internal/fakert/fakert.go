// Package fakert has fakes of podcell's container runtime and builder for
// in-process tests of the controller and the Caddy packages: no Podman, no
// built binary. (A stand-in until the scaler's fake runtime is exported
// by scaler/scalertest.)
package fakert

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/scaler"
)

// Runtime runs "containers" as HTTP servers in the test process: each
// answers with its env and the request it got, so a test sees what the
// scaler ran and what a gateway sent. Enough for the controller's tests;
// the scaler's own fake covers its policy.
type Runtime struct {
	mu         sync.Mutex
	next       int
	containers map[string]*fakeContainer
}

type fakeContainer struct {
	info scaler.ContainerInfo
	spec scaler.ContainerSpec
	ln   net.Listener
	srv  *http.Server
}

// New is an empty fake runtime.
func New() *Runtime { return &Runtime{containers: map[string]*fakeContainer{}} }

func (f *Runtime) Host(context.Context) (scaler.HostInfo, error) {
	return scaler.HostInfo{Version: "fake", CgroupVersion: "v2", CPUs: 2, OCIRuntime: "fake"}, nil
}

func (f *Runtime) Create(_ context.Context, spec scaler.ContainerSpec) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	id := fmt.Sprintf("c%d", f.next)
	f.containers[id] = &fakeContainer{spec: spec, ln: ln,
		info: scaler.ContainerInfo{ID: id, Name: spec.Name, State: scaler.StateCreated, Labels: spec.Labels, Addr: ln.Addr().String()}}
	return id, nil
}

func (f *Runtime) get(id string) (*fakeContainer, error) {
	c := f.containers[id]
	if c == nil {
		return nil, fmt.Errorf("no such container %s", id)
	}
	return c, nil
}

func (f *Runtime) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return err
	}
	env := c.spec.Env
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"env": env, "image": c.spec.Image, "method": r.Method, "uri": r.RequestURI, "header": r.Header})
	})}
	go c.srv.Serve(c.ln)
	c.info.State = scaler.StateRunning
	return nil
}

func (f *Runtime) Stop(_ context.Context, id string, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if c.srv != nil {
		c.srv.Close()
	} else {
		c.ln.Close()
	}
	c.info.State = scaler.StateExited
	return nil
}

func (f *Runtime) Pause(context.Context, string) error   { return nil }
func (f *Runtime) Unpause(context.Context, string) error { return nil }

func (f *Runtime) Remove(ctx context.Context, id string) error {
	f.Stop(ctx, id, 0)
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, id)
	return nil
}

func (f *Runtime) Inspect(_ context.Context, id string) (scaler.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(id)
	if err != nil {
		return scaler.ContainerInfo{}, err
	}
	return c.info, nil
}

func (f *Runtime) List(_ context.Context, label, value string) ([]scaler.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []scaler.ContainerInfo
	for _, c := range f.containers {
		if c.info.Labels[label] == value {
			out = append(out, c.info)
		}
	}
	return out, nil
}

func (f *Runtime) Events(ctx context.Context, _, _ string) (<-chan scaler.Event, error) {
	ch := make(chan scaler.Event)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

func (f *Runtime) Logs(context.Context, string, int) ([]string, error) { return nil, nil }

func (f *Runtime) FollowLogs(ctx context.Context, _ string, _ time.Time, _ func(scaler.LogLine)) error {
	<-ctx.Done()
	return ctx.Err()
}

// Running is the number of containers that run.
func (f *Runtime) Running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.containers {
		if c.info.State == scaler.StateRunning {
			n++
		}
	}
	return n
}

// Builder "builds" an image per call: its ID names the commit the
// source's ref resolves to. It is the builder's second implementation the
// Builder interface exists for.
type Builder struct {
	mu      sync.Mutex
	commit  string // what the ref resolves to; "" builds fail
	builds  int
	removed []string
}

func (b *Builder) Build(_ context.Context, spec builder.Spec, tag string, logLine func(string)) (*builder.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.builds++
	logLine(fmt.Sprintf("STEP 1/1: building %s", spec.URL))
	if b.commit == "" {
		return nil, fmt.Errorf("the repository has no commit")
	}
	return &builder.Result{Tag: tag, ImageID: "sha256:" + b.commit, Commit: b.commit}, nil
}

func (b *Builder) Resolve(context.Context, builder.Source) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.commit, nil
}

func (b *Builder) ImageExists(context.Context, string) (bool, error) { return true, nil }
func (b *Builder) Images(context.Context) ([]builder.Image, error)   { return nil, nil }
func (b *Builder) ImagesInUse(context.Context) (map[string]bool, error) {
	return map[string]bool{}, nil
}
func (b *Builder) RemoveImage(_ context.Context, id string) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removed = append(b.removed, id)
	return []string{id}, nil
}

// SetCommit sets what the ref resolves to and the next builds build; ""
// makes them fail.
func (b *Builder) SetCommit(commit string) {
	b.mu.Lock()
	b.commit = commit
	b.mu.Unlock()
}
