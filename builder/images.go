package builder

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
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

// Images lists every image, intermediate build images included, of the
// rootful store and, when builds run as a user, of that user's store: its
// builds' layers (the cache, a failed build's steps) live there, and each
// built image is in both stores under one ID. An image in both is listed
// once, with the parent it has in the user's store (the rootful copy,
// loaded, has none).
func (b *Builder) Images(ctx context.Context) ([]Image, error) {
	list, err := images.List(b.rt.BindingsContext(ctx), new(images.ListOptions).WithAll(true))
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	out := make([]Image, 0, len(list))
	at := map[string]int{}
	for _, s := range list {
		at[s.ID] = len(out)
		out = append(out, Image{ID: s.ID, Parent: s.ParentId, Names: s.Names, NamesHistory: s.History, Labels: s.Labels,
			Size: s.Size, Created: time.Unix(s.Created, 0)})
	}
	if b.user == nil {
		return out, nil
	}
	theirs, err := b.user.images(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the build user's images: %w", err)
	}
	for _, img := range theirs {
		i, ok := at[img.ID]
		if !ok {
			out = append(out, img)
			continue
		}
		if out[i].Parent == "" {
			out[i].Parent = img.Parent
		}
		out[i].NamesHistory = appendNew(out[i].NamesHistory, img.NamesHistory...)
	}
	return out, nil
}

// appendNew appends to list the names it lacks.
func appendNew(list []string, names ...string) []string {
	for _, n := range names {
		if !slices.Contains(list, n) {
			list = append(list, n)
		}
	}
	return list
}

// ImagesInUse are the IDs of the images that any container uses (of any
// owner, running or not, in the rootful store and the build user's):
// removing one would fail, or break the container.
func (b *Builder) ImagesInUse(ctx context.Context) (map[string]bool, error) {
	list, err := containers.List(b.rt.BindingsContext(ctx), new(containers.ListOptions).WithAll(true))
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	used := map[string]bool{}
	for _, c := range list {
		used[c.ImageID] = true
	}
	if b.user != nil {
		theirs, err := b.user.imagesInUse(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the build user's containers: %w", err)
		}
		for id := range theirs {
			used[id] = true
		}
	}
	return used, nil
}

// RemoveImage removes one image by ID, never by force, from the rootful
// store and the build user's: an image a container uses stays and the
// call fails. Podman then removes the image's parents that are left
// without a name and without another child (the build's intermediate
// layers no other image shares, `podman rmi` without --no-prune). An
// image already gone is no error. It returns the IDs of every image
// removed (from either store).
func (b *Builder) RemoveImage(ctx context.Context, id string) ([]string, error) {
	report, errs := images.Remove(b.rt.BindingsContext(ctx), []string{id}, new(images.RemoveOptions).WithForce(false).WithIgnore(true))
	var deleted []string
	if report != nil {
		deleted = report.Deleted
	}
	if b.user != nil {
		theirs, err := b.user.removeImage(ctx, id)
		deleted = appendNew(deleted, theirs...)
		errs = append(errs, err)
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
