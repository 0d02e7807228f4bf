package controller

import (
	"fmt"
	"testing"
)

// appliesOf is how many configs the controller has handed its scaler.
func appliesOf(c *Controller) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applies
}

// A reload of a config whose services did not change applies none of
// them, the config's or the admin API's (issue 13: reload time flat in
// the number of services); the one service a reload changes is applied,
// alone, and so is a change the API made between reloads, which the next
// reload keeps.
func TestReloadAppliesOnlyChanges(t *testing.T) {
	const n = 40
	var decl []Declared
	for i := range n {
		decl = append(decl, image(fmt.Sprintf("cfg-%d", i), "localhost/web:1", map[string]string{"N": fmt.Sprint(i)}))
	}
	c, _ := newTest(t, nil, decl...)
	for i := range n {
		if _, _, err := c.Put(fmt.Sprintf("api-%d", i), ServiceSpec{Image: "localhost/web:1"}); err != nil {
			t.Fatal(err)
		}
	}
	reload := func(what string, services []Declared, want int) {
		t.Helper()
		before := appliesOf(c)
		if err := c.Start(Settings{KeepImages: DefaultKeepImages}, services); err != nil {
			t.Fatal(err)
		}
		if got := appliesOf(c) - before; got != want {
			t.Errorf("%s: %d services applied, want %d", what, got, want)
		}
		if got := len(c.Scaler().Services()); got != 2*n {
			t.Errorf("%s: %d services run, want %d", what, got, 2*n)
		}
	}
	revs, _ := c.Revisions("cfg-3")

	reload("an unchanged reload", decl, 0)
	reload("a second unchanged reload", decl, 0)
	if again, _ := c.Revisions("cfg-3"); len(again) != len(revs) {
		t.Errorf("unchanged reloads added revisions: %d, then %d", len(revs), len(again))
	}

	changed := append([]Declared(nil), decl...)
	changed[3] = image("cfg-3", "localhost/web:1", map[string]string{"N": "three"})
	reload("a reload that changes cfg-3", changed, 1)
	if got := config(t, c, "cfg-3").Env["N"]; got != "three" {
		t.Errorf("cfg-3 runs with N=%q after its change", got)
	}

	if _, err := c.SetEnv("api-7", map[string]*string{"TOKEN": ptr("t1")}); err != nil {
		t.Fatal(err)
	}
	reload("a reload after an API change", changed, 0)
	if got := config(t, c, "api-7").Env["TOKEN"]; got != "t1" {
		t.Errorf("api-7 runs with TOKEN=%q after a reload, want the API's t1", got)
	}
	// The API declares the same spec again: nothing to run anew.
	before := appliesOf(c)
	if _, _, err := c.Put("api-7", ServiceSpec{Image: "localhost/web:1"}); err != nil {
		t.Fatal(err)
	}
	if got := appliesOf(c) - before; got != 0 {
		t.Errorf("a PUT of an unchanged spec applied %d configs", got)
	}
}

// The config shadows a service the admin API stored under the same name;
// a reload that stops declaring it brings the stored one back, though a
// reload otherwise does not read the stored services again.
func TestReloadUncoversStoredService(t *testing.T) {
	c, _ := newTest(t, nil)
	if _, _, err := c.Put("web", ServiceSpec{Image: "localhost/api:1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(Settings{}, []Declared{image("web", "localhost/config:1", nil)}); err != nil {
		t.Fatal(err)
	}
	if got := config(t, c, "web").Image; got != "localhost/config:1" {
		t.Fatalf("the config declares web, which runs %s", got)
	}
	if err := c.Start(Settings{}, nil); err != nil {
		t.Fatal(err)
	}
	if got := config(t, c, "web").Image; got != "localhost/api:1" {
		t.Fatalf("after the config let go of web, it runs %s, want the stored localhost/api:1", got)
	}
	if st, _ := c.Status("web"); st.Source != "api" {
		t.Errorf("web's source is %q, want api", st.Source)
	}
}

// BenchmarkReload is a config reload (Start with the same config) with
// 1,000 services the admin API declared, on the fake runtime: what
// benchmarks/results/scale-20261130-012730-after.md profiles.
//
//	go test -run '^$' -bench BenchmarkReload -cpuprofile cpu.out ./caddymodule/controller/
func BenchmarkReload(b *testing.B) {
	c, _ := openTest(b, b.TempDir(), nil)
	for i := range 1000 {
		if _, _, err := c.Put(fmt.Sprintf("api-%d", i), ServiceSpec{Image: "localhost/web:1"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if err := c.Start(Settings{KeepImages: DefaultKeepImages}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
