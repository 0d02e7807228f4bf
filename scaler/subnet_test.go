package scaler

import (
	"net"
	"testing"
)

// A service network takes the first /24 of the pool that no network on the
// host overlaps, whether the other is a /24 or wider.
func TestFreeSubnet(t *testing.T) {
	cidr := func(s string) *net.IPNet { _, n, _ := net.ParseCIDR(s); return n }
	for _, c := range []struct {
		used []string
		want string
	}{
		{nil, "10.89.0.0/24"},
		{[]string{"10.88.0.0/16", "10.89.0.0/24", "10.89.1.0/24"}, "10.89.2.0/24"},
		{[]string{"10.89.0.0/23"}, "10.89.2.0/24"},
		{[]string{"10.89.0.0/16"}, ""},
	} {
		var used []*net.IPNet
		for _, u := range c.used {
			used = append(used, cidr(u))
		}
		got := ""
		if n := freeSubnet(used); n != nil {
			got = n.String()
		}
		if got != c.want {
			t.Errorf("freeSubnet(%v) = %q, want %q", c.used, got, c.want)
		}
	}
}
