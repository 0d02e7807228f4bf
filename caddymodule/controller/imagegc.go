package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/caddymodule/store"
)

// Image garbage collection. Every build of a new commit moves the
// service's tag (imageTag) to a new image and leaves the old one untagged,
// still named by ID in the revision history; a build with layers also
// leaves intermediate images, and a failed one leaves the layers of the
// steps it finished. Nothing of that is ever removed by Podman. So after
// each build and rollback, a service's deployer removes:
//
//   - the images of its builds that rollback no longer reaches: all but the
//     one serving and the keep_images newest other images of its revision
//     history (Podman removes with each image its intermediate layers that
//     no other image shares, as `podman rmi` does);
//   - the dangling layers its builds made (no name, no child: failed
//     builds' steps; not the layers they took from the cache, which
//     another service's build may have made and will remove), unless a
//     build of any service runs: its newest layer looks the same until its
//     next step builds on it.
//
// An image is a service's when every podcell build name it has had
// (current names and names history) is of that service: an image two
// services share (the same source built by both) is never removed. Images
// a container uses, of any owner, are never removed, and nothing is ever
// removed by force. Deleting a service through the admin API removes all
// its images. Removing a service from the config does not (a stop does the
// same to the deployer, and a restart must still serve the last build).

// DefaultKeepImages is how many images before the serving one rollback
// can reach by default.
const DefaultKeepImages = 3

// buildImagePrefix is the name of every image a service's builds make,
// up to its tag (see imageTag).
func buildImagePrefix(service string) string { return "localhost/podcell-build/" + service + ":" }

// imageOwner is the service whose builds made img ("" if none did, or
// more than one).
func imageOwner(img builder.Image) string {
	owner := ""
	for _, names := range [][]string{img.Names, img.NamesHistory} {
		for _, n := range names {
			rest, ok := strings.CutPrefix(n, "localhost/podcell-build/")
			if !ok {
				continue
			}
			svc, _, _ := strings.Cut(rest, ":")
			if owner != "" && owner != svc {
				return ""
			}
			owner = svc
		}
	}
	return owner
}

// keptImages are the image IDs rollback can reach: current and the keep
// newest other images of the revision history (oldest first).
func keptImages(current string, revs []store.Revision, keep int) map[string]bool {
	kept := map[string]bool{}
	if current != "" {
		kept[current] = true
	}
	others := 0
	for i := len(revs) - 1; i >= 0 && others < keep; i-- {
		if img := revs[i].Image; img != "" && !kept[img] {
			kept[img] = true
			others++
		}
	}
	return kept
}

// shortLayer is the form a build log names layers in.
func shortLayer(id string) string { return id[:min(len(id), 11)] }

// madeLayer is a layer a build's log named, with the time the build ran.
// The log carries the repository's own output too, so a build step can
// print any "--> <id>" line: a layer named that way counts as the build's
// only if Podman created it while the build ran (builds queue, one at a
// time by default, and dangling layers go only while no build runs).
type madeLayer struct {
	ID       string    // as the build log prints it
	From, To time.Time // To zero: the build still runs
}

// covers says whether an image created at t can be the build's. Podman
// reports creation times in whole seconds: a second of slack each side.
func (m madeLayer) covers(t time.Time) bool {
	if t.Before(m.From.Add(-time.Second)) {
		return false
	}
	return m.To.IsZero() || !t.After(m.To.Add(time.Second))
}

// planImageGC decides which of imgs to remove for service: its build
// images outside keep (finals), and the dangling layers its builds made
// (see madeLayer) when dangling is true. Images in inUse are never chosen.
func planImageGC(service string, imgs []builder.Image, keep, inUse map[string]bool, layers []madeLayer, dangling bool) (finals, leaves []string) {
	children := map[string]int{}
	for _, img := range imgs {
		if img.Parent != "" {
			children[img.Parent]++
		}
	}
	made := map[string]madeLayer{}
	for _, l := range layers {
		made[shortLayer(l.ID)] = l
	}
	for _, img := range imgs {
		if keep[img.ID] || inUse[img.ID] {
			continue
		}
		owner := imageOwner(img)
		switch {
		case owner == service:
			finals = append(finals, img.ID)
		case owner != "":
			// another service's build
		case dangling && len(img.Names) == 0 && children[img.ID] == 0:
			if m, ok := made[shortLayer(img.ID)]; ok && m.covers(img.Created) {
				leaves = append(leaves, img.ID)
			}
		}
	}
	return finals, leaves
}

// imageGCResult is what one collection did.
type imageGCResult struct {
	Removed []string // image IDs, cascaded layers included
	Freed   int64    // bytes, estimated from the layer sizes Podman reports
	InUse   int      // images of the service a container uses, left alone
}

// collectImages removes what planImageGC chose; an image another
// collection or cascade removed first is not an error.
func collectImages(ctx context.Context, b Builder, service string, keep map[string]bool, layers []madeLayer, dangling bool) (imageGCResult, error) {
	var res imageGCResult
	imgs, err := b.Images(ctx)
	if err != nil {
		return res, err
	}
	inUse, err := b.ImagesInUse(ctx)
	if err != nil {
		return res, err
	}
	finals, leaves := planImageGC(service, imgs, keep, inUse, layers, dangling)
	for _, img := range imgs {
		if inUse[img.ID] && imageOwner(img) == service {
			res.InUse++
		}
	}
	byID := map[string]builder.Image{}
	for _, img := range imgs {
		byID[img.ID] = img
	}
	var errs []error
	for _, id := range append(finals, leaves...) {
		deleted, err := b.RemoveImage(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("image %s: %w", shortLayer(id), err))
		}
		for _, d := range deleted {
			res.Removed = append(res.Removed, d)
			img := byID[d]
			// An image's Size includes its parent's layers: its own is the
			// difference.
			res.Freed += img.Size - byID[img.Parent].Size
		}
	}
	return res, errors.Join(errs...)
}

// madeLayers are the layers the build's log named as made by it, with
// the build's time span. The caller holds the deployer's mu (BuildInfo).
func (b *buildRecord) madeLayers() []madeLayer {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]madeLayer, len(b.layers))
	for i, id := range b.layers {
		out[i] = madeLayer{ID: id, From: b.Started, To: b.Finished}
	}
	return out
}

// collectImages removes the images of the service's builds that rollback
// can no longer reach and the dangling layers of its builds. It runs in
// its own goroutine after a build or a rollback, holding images (which
// keeps builds and rollbacks of this service from changing what serves
// meanwhile), never under mu.
func (d *deployer) collectImages(reason string) {
	d.images <- struct{}{}
	defer func() { <-d.images }()
	if d.ctx.Err() != nil {
		return // the service is gone or Caddy stops: keep what it had
	}
	d.mu.Lock()
	b, keep := d.b, d.keepImages
	current := ""
	if d.current != nil {
		current = d.current.imageID
	}
	var layers []madeLayer
	for _, rec := range d.builds {
		layers = append(layers, rec.madeLayers()...)
	}
	d.mu.Unlock()
	revs, err := d.c.st.Revisions(d.name)
	if err != nil {
		d.log.Warn("image cleanup skipped: cannot read the revisions", zap.String("service", d.name), zap.Error(err))
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, 2*time.Minute)
	defer cancel()
	kept := keptImages(current, revs, keep)
	res, err := collectImages(ctx, b, d.name, kept, layers, d.c.buildsRunning.Load() == 0)
	d.logCollection(reason, res, len(kept), err)
}

func (d *deployer) logCollection(reason string, res imageGCResult, kept int, err error) {
	if len(res.Removed) > 0 || err != nil {
		short := make([]string, len(res.Removed))
		for i, id := range res.Removed {
			short[i] = shortLayer(id)
		}
		d.log.Info("removed images", zap.String("service", d.name), zap.String("after", reason), zap.Strings("images", short),
			zap.Int("kept", kept), zap.Int("in_use", res.InUse), zap.Int64("freed_bytes", res.Freed), zap.Error(err))
	}
}

// removeAllImages removes every image and build layer of a deleted
// service (d, whose context is canceled). Its instances may still be
// stopping: an image a container uses is tried again for a while.
func (d *deployer) removeAllImages(layers []madeLayer) {
	d.images <- struct{}{} // after the build that the delete canceled ends
	defer func() { <-d.images }()
	d.mu.Lock()
	b := d.b
	d.mu.Unlock()
	deadline := time.Now().Add(3 * time.Minute)
	var total imageGCResult
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		res, err := collectImages(ctx, b, d.name, nil, layers, d.c.buildsRunning.Load() == 0)
		cancel()
		total.Removed = append(total.Removed, res.Removed...)
		total.Freed += res.Freed
		total.InUse = res.InUse
		done := err == nil && res.InUse == 0 && (len(layers) == 0 || d.c.buildsRunning.Load() == 0)
		if done || time.Now().After(deadline) {
			d.logCollection("delete", total, 0, err)
			return
		}
		select {
		case <-time.After(5 * time.Second):
		case <-d.c.closing:
			return // podcell stops: the next start does not know them, they stay
		}
	}
}
