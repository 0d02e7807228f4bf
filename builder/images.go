package builder

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/images"
)

// What the image garbage collection of podcell needs from Podman: every
// image with its parent and the names it has had, the images containers
// use, and removal. Policy (which images go) is the caller's.

// Image is one image of Podman's store, intermediate build images included.
type Image struct {
	ID     string
	Parent string // the image it was built on ("" for a base)
	// Names are its current names; NamesHistory every name it has had,
	// newest first (an image whose tag moved to a newer build keeps its old
	// name here).
	Names        []string
	NamesHistory []string
	Labels       map[string]string
	Size         int64 // with its parents' layers, as Podman reports it
	Created      time.Time
}

// Images lists every image, intermediate build images included.
func (b *Builder) Images(ctx context.Context) ([]Image, error) {
	list, err := images.List(b.rt.BindingsContext(ctx), new(images.ListOptions).WithAll(true))
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	out := make([]Image, 0, len(list))
	for _, s := range list {
		out = append(out, Image{ID: s.ID, Parent: s.ParentId, Names: s.Names, NamesHistory: s.History, Labels: s.Labels,
			Size: s.Size, Created: time.Unix(s.Created, 0)})
	}
	return out, nil
}

// ImagesInUse are the IDs of the images that any container uses (of any
// owner, running or not): removing one would fail, or break the container.
func (b *Builder) ImagesInUse(ctx context.Context) (map[string]bool, error) {
	list, err := containers.List(b.rt.BindingsContext(ctx), new(containers.ListOptions).WithAll(true))
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	used := map[string]bool{}
	for _, c := range list {
		used[c.ImageID] = true
	}
	return used, nil
}

// RemoveImage removes one image by ID, never by force: an image a
// container uses stays and the call fails. Podman then removes the
// image's parents that are left without a name and without another child
// (the build's intermediate layers no other image shares, `podman rmi`
// without --no-prune). An image already gone is no error. It returns the
// IDs of every image removed.
func (b *Builder) RemoveImage(ctx context.Context, id string) ([]string, error) {
	report, errs := images.Remove(b.rt.BindingsContext(ctx), []string{id}, new(images.RemoveOptions).WithForce(false).WithIgnore(true))
	var deleted []string
	if report != nil {
		deleted = report.Deleted
	}
	return deleted, errors.Join(errs...)
}

// layerLine is the line a build prints after each step with the (short)
// ID of the image the step made or, right after a "--> Using cache <ID>"
// line, took from the cache.
var layerLine = regexp.MustCompile(`^--> ([0-9a-f]{11,64})$`)

// LayerID returns the image ID (or its prefix) a build log line names as
// a step's result, and whether the line is one.
func LayerID(line string) (string, bool) {
	m := layerLine.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	return m[1], true
}
