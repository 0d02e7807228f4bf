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
