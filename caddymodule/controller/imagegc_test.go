package controller

import (
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/caddymodule/store"
)

// The image collection's policy, on a fake image tree (imagegc_e2e_test.go
// runs it against Podman).

func TestKeptImages(t *testing.T) {
	revs := []store.Revision{{Image: "a"}, {Image: "b"}, {Image: "b"}, {Image: "c"}, {Image: "d"}, {Image: "c"}}
	for _, tc := range []struct {
		current string
		keep    int
		want    []string
	}{
		{"c", 0, []string{"c"}},
		{"c", 1, []string{"c", "d"}},
		{"c", 2, []string{"b", "c", "d"}}, // b twice in a row is one image
		{"c", 9, []string{"a", "b", "c", "d"}},
		{"", 1, []string{"c"}}, // nothing serves yet: the newest revision's image
	} {
		var got []string
		for id := range keptImages(tc.current, revs, tc.keep) {
			got = append(got, id)
		}
		sort.Strings(got)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("keptImages(%q, keep %d) = %v, want %v", tc.current, tc.keep, got, tc.want)
		}
	}
}

func TestPlanImageGC(t *testing.T) {
	const base = "base000000000000"
	// The builds ran from t0 to t1; every image was made then but old.
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	t1 := t0.Add(2 * time.Minute)
	img := func(id, parent string, names, history []string) builder.Image {
		return builder.Image{ID: id, Parent: parent, Names: names, NamesHistory: history, Created: t0.Add(time.Minute)}
	}
	imgs := []builder.Image{
		img(base, "", []string{"localhost/podcell-runtime:python"}, []string{"localhost/podcell-runtime:python"}),
		img("deps00000000000a", base, nil, []string{"docker.io/library/x-tmp:latest"}), // pip layer, shared
		// svc's builds: v1 and v2 untagged, v3 tagged (serving).
		img("v1000000000000aa", "deps00000000000a", nil, []string{"localhost/podcell-build/svc:h1"}),
		img("v2000000000000aa", "deps00000000000a", nil, []string{"localhost/podcell-build/svc:h1"}),
		img("v3000000000000aa", "deps00000000000a", []string{"localhost/podcell-build/svc:h1"}, []string{"localhost/podcell-build/svc:h1"}),
		// A failed build's step (dangling) and one of another build run now.
		img("fail00000000000a", base, nil, []string{"docker.io/library/y-tmp:latest"}),
		img("busy00000000000a", base, nil, []string{"docker.io/library/z-tmp:latest"}),
		// Another service's images, one of them shared with svc.
		img("o1000000000000aa", "deps00000000000a", nil, []string{"localhost/podcell-build/svc2:h2"}),
		img("sh00000000000aaa", "deps00000000000a", nil, []string{"localhost/podcell-build/svc2:h2", "localhost/podcell-build/svc:h1"}),
		// svc-2 is another service, not svc with a suffix.
		img("x1000000000000aa", "deps00000000000a", nil, []string{"localhost/podcell-build/svc-2:h"}),
		// A dangling layer made before svc's builds, which a build step
		// named by printing "--> old000000000" in its own output.
		{ID: "old00000000000aa", Parent: base, Created: t0.Add(-time.Hour)},
	}
	keep := map[string]bool{"v3000000000000aa": true, "v2000000000000aa": true}
	var layers []madeLayer
	for _, id := range []string{"deps00000000000", "fail00000000000", "v30000000000000", "old000000000"} {
		layers = append(layers, madeLayer{ID: id, From: t0, To: t1})
	}

	finals, leaves := planImageGC("svc", imgs, keep, nil, layers, true)
	if want := []string{"v1000000000000aa"}; !reflect.DeepEqual(finals, want) {
		t.Errorf("finals %v, want %v", finals, want)
	}
	if want := []string{"fail00000000000a"}; !reflect.DeepEqual(leaves, want) {
		t.Errorf("dangling layers %v, want %v (not the busy one no build of svc named, not the shared deps layer, not the old one made before the build that named it)", leaves, want)
	}

	// A build runs somewhere: dangling layers may be its newest step.
	if _, leaves := planImageGC("svc", imgs, keep, nil, layers, false); leaves != nil {
		t.Errorf("dangling layers %v while a build runs, want none", leaves)
	}
	// An image a container uses stays, even unkept.
	if finals, _ := planImageGC("svc", imgs, keep, map[string]bool{"v1000000000000aa": true}, layers, true); finals != nil {
		t.Errorf("finals %v with v1 in use, want none", finals)
	}
	// Deleting the service: everything of it, nothing of others.
	finals, leaves = planImageGC("svc", imgs, nil, nil, layers, true)
	if want := []string{"v1000000000000aa", "v2000000000000aa", "v3000000000000aa"}; !reflect.DeepEqual(finals, want) {
		t.Errorf("finals on delete %v, want %v", finals, want)
	}
	if want := []string{"fail00000000000a"}; !reflect.DeepEqual(leaves, want) {
		t.Errorf("dangling layers on delete %v, want %v", leaves, want)
	}
}

func TestLayerID(t *testing.T) {
	for line, want := range map[string]string{
		"--> 8cdb9d1a6e0": "8cdb9d1a6e0",
		"--> Using cache 1d42cb32a97974452fa28a4b7b62157de024ef1fb659766dc6b12d64864bcbdc": "",
		"STEP 4/5: COPY b /b":    "",
		"--> 8cdb9d1a6e0 extra":  "",
		"  --> 8cdb9d1a6e0":      "",
		"--> 8CDB9D1A6E0":        "",
		"COMMIT localhost/x:tag": "",
	} {
		got, ok := builder.LayerID(line)
		if got != want || ok != (want != "") {
			t.Errorf("LayerID(%q) = %q, %v; want %q", line, got, ok, want)
		}
	}
}

// A build records the layers its steps made, not those from the cache.
func TestBuildRecordsMadeLayers(t *testing.T) {
	rec := &buildRecord{changed: make(chan struct{})}
	for _, l := range []string{
		"STEP 2/5: COPY bin /bin1",
		"--> Using cache c974d954fe3c280bb8614e784f17635988b6c338dc380423a3a5dfba7006cf10",
		"--> c974d954fe3",
		"STEP 3/5: COPY a /a",
		"--> 7bf1deeb2e4",
		"STEP 4/5: LABEL x=y",
		"COMMIT localhost/podcell-build/svc:abc",
		"--> 5c3f497ae10",
	} {
		rec.addLine(l)
	}
	var got []string
	for _, l := range rec.madeLayers() {
		got = append(got, l.ID)
	}
	if want := []string{"7bf1deeb2e4", "5c3f497ae10"}; !reflect.DeepEqual(got, want) {
		t.Errorf("layers %v, want %v", got, want)
	}
}
