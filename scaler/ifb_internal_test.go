package scaler

import (
	"fmt"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
)

// testVeth makes a veth pair on the host, removed at the end, and returns
// one end, standing for the host end of an instance's veth.
func testVeth(tb testing.TB, prefix string) netlink.Link {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to make links")
	}
	name := fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name + "a"}, PeerName: name + "b"}
	if err := netlink.LinkAdd(veth); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { netlink.LinkDel(veth) })
	host, err := netlink.LinkByName(name + "a")
	if err != nil {
		tb.Fatal(err)
	}
	return host
}

// shapeIngress on a veth of the test's own (no Podman): the IFB is made
// up with a tbf at the rate and the veth's ingress redirects to it; a
// second call (an adopted instance) takes it over without a second filter;
// removeIFB removes it, and leaves a device that is not podcell's alone.
func TestShapeIngressAndRemoveIFB(t *testing.T) {
	host := testVeth(t, "pcti")
	dev := ifbFor("podcelltest", "svc", "podcelltest-svc-1", fmt.Sprintf("%012x0000", os.Getpid()))
	defer removeIFB(dev)
	for range 2 {
		if _, err := shapeIngress(host, dev, 30e6); err != nil {
			t.Fatal(err)
		}
	}
	ifb, err := netlink.LinkByName(dev.name)
	if err != nil || ifb.Attrs().Flags&(1<<0) == 0 {
		t.Fatalf("IFB %s: %v (flags %v), want it up", dev.name, err, ifb.Attrs().Flags)
	}
	if owner, service, cname, id, ok := parseIFBAlias(ifb.Attrs().Alias); !ok || owner != "podcelltest" || service != "svc" || cname != "podcelltest-svc-1" || id[:12] != dev.name[3:] {
		t.Errorf("alias %q reads as %s %s %s %s %v", ifb.Attrs().Alias, owner, service, cname, id, ok)
	}
	qs, _ := netlink.QdiscList(ifb)
	if len(qs) != 1 || qs[0].(*netlink.Tbf).Rate*8 != 30e6 {
		t.Errorf("qdiscs on the IFB: %v, want a tbf at 30 Mbit/s", qs)
	}
	filters, err := netlink.FilterList(host, netlink.MakeHandle(0xffff, 0))
	if err != nil || len(filters) != 1 || filters[0].(*netlink.U32).RedirIndex != ifb.Attrs().Index {
		t.Errorf("ingress filters on the veth: %v (%v), want one redirect to the IFB", filters, err)
	}
	if err := removeIFB(dev); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(dev.name); err == nil {
		t.Error("removeIFB left the IFB")
	}
	if err := removeIFB(dev); err != nil {
		t.Errorf("removing a gone IFB: %v", err)
	}
	// Another's device of that name is neither taken over nor removed.
	other := &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: dev.name}}
	if err := netlink.LinkAdd(other); err != nil {
		t.Fatal(err)
	}
	defer netlink.LinkDel(other)
	if _, err := shapeIngress(host, dev, 30e6); err == nil {
		t.Error("shapeIngress took over a device that is not this instance's")
	}
	if removeIFB(dev); func() bool { _, err := netlink.LinkByName(dev.name); return err != nil }() {
		t.Error("removeIFB removed a device that is not podcell's")
	}
}

// What shaping the download direction on the host adds to an instance's
// sandbox step: making its IFB with a tbf and redirecting its veth's
// ingress (shapeIngress), and removing the IFB later (removeIFB, off the
// request path). go test -run - -bench ShapeIngress ./scaler/
func BenchmarkShapeIngress(b *testing.B) {
	host := testVeth(b, "pctb")
	b.Run("shape", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dev := ifbFor("podcellbench", "svc", "c", fmt.Sprintf("%012x", i))
			if _, err := shapeIngress(host, dev, 30e6); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			removeIFB(dev)
			b.StartTimer()
		}
	})
	b.Run("remove", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dev := ifbFor("podcellbench", "svc", "c", fmt.Sprintf("%012x", i))
			b.StopTimer()
			if _, err := shapeIngress(host, dev, 30e6); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := removeIFB(dev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
