// Package fakebuild is a fake of the builder for in-process tests of the
// controller and the admin API: builds that take no time and no Podman
// (scaler/scalertest's Fake is the runtime's).
package fakebuild

import (
	"context"
	"fmt"
	"sync"

	"github.com/podcell/podcell/builder"
)

// Builder "builds" an image per call: its ID names the commit the
// source's ref resolves to. It is the builder's second implementation the
// Builder interface exists for.
type Builder struct {
	mu      sync.Mutex
	commit  string // what the ref resolves to; "" builds fail
	builds  int
	removed []string
	gate    chan struct{} // builds wait until it closes (Hold)
}

func (b *Builder) Build(ctx context.Context, spec builder.Spec, tag string, logLine func(string)) (*builder.Result, error) {
	b.mu.Lock()
	gate := b.gate
	b.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
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

// Hold makes the next builds wait, as a real build takes minutes, until
// Release.
func (b *Builder) Hold() {
	b.mu.Lock()
	b.gate = make(chan struct{})
	b.mu.Unlock()
}

// Release lets the builds Hold stopped go on.
func (b *Builder) Release() {
	b.mu.Lock()
	if b.gate != nil {
		close(b.gate)
		b.gate = nil
	}
	b.mu.Unlock()
}

// Builds is how many builds ran to their end.
func (b *Builder) Builds() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.builds
}
