package scaler

import (
	"math"
	"strings"
	"testing"
)

func TestLimitsFor(t *testing.T) {
	cases := []struct {
		memoryMB int
		quota    int64
		cpus     int
	}{
		{128, 7235, 1},
		{256, 14471, 1}, // 0.1447 core
		{1024, 57885, 1},
		{1769, 100000, 1}, // one whole core
		{1770, 100056, 2}, // a bit more than a core spreads over two
		{3538, 200000, 2},
		{3539, 200056, 3},
		{7076, 400000, 4}, // the maximum: 4 cores
	}
	for _, tc := range cases {
		l, err := LimitsFor(tc.memoryMB, 64, 512)
		if err != nil {
			t.Errorf("LimitsFor(%d): %v", tc.memoryMB, err)
			continue
		}
		want := Limits{MemoryMB: tc.memoryMB, TmpMB: 64, PidsLimit: 512, CPUQuota: tc.quota, CPUPeriod: 100000, CPUs: tc.cpus}
		if l != want {
			t.Errorf("LimitsFor(%d) = %+v, want %+v", tc.memoryMB, l, want)
		}
		if l.MemoryBytes() != int64(tc.memoryMB)*1024*1024 {
			t.Errorf("LimitsFor(%d).MemoryBytes() = %d", tc.memoryMB, l.MemoryBytes())
		}
	}
	l, _ := LimitsFor(256, 64, 512)
	if c := l.Cores(); math.Abs(c-0.1447) > 0.00005 {
		t.Errorf("256 MB gets %.5f cores, want 0.1447", c)
	}
	l, _ = LimitsFor(1769, 64, 512)
	if c := l.Cores(); c != 1 {
		t.Errorf("1769 MB gets %v cores, want 1", c)
	}
}

func TestLimitsForRejects(t *testing.T) {
	cases := []struct {
		name     string
		memoryMB int
		tmpMB    int
		pids     int64
		want     []string // substrings of the error
	}{
		{"memory below minimum", 127, 64, 512, []string{"memory", "127", "128 MB", "7076 MB"}},
		{"memory above maximum", 7077, 64, 512, []string{"memory", "7077", "128 MB", "7076 MB"}},
		{"memory zero", 0, 64, 512, []string{"memory"}},
		{"tmp zero", 256, 0, 512, []string{"tmp_size", "256 MB"}},
		{"tmp negative", 256, -1, 512, []string{"tmp_size"}},
		{"tmp larger than memory", 256, 257, 512, []string{"tmp_size", "257", "256 MB"}},
		{"pids too small", 256, 64, 15, []string{"pids_limit", "15", "16"}},
		{"pids negative", 256, 64, -1, []string{"pids_limit"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := LimitsFor(tc.memoryMB, tc.tmpMB, tc.pids)
			if err == nil {
				t.Fatalf("LimitsFor(%d, %d, %d) = %+v, want an error", tc.memoryMB, tc.tmpMB, tc.pids, l)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLimitsForAcceptsEdges(t *testing.T) {
	for _, tc := range []struct {
		memoryMB, tmpMB int
		pids            int64
	}{
		{128, 1, 16},
		{256, 256, 16}, // /tmp may take all of memory
		{7076, 7076, 1 << 20},
	} {
		if _, err := LimitsFor(tc.memoryMB, tc.tmpMB, tc.pids); err != nil {
			t.Errorf("LimitsFor(%d, %d, %d): %v", tc.memoryMB, tc.tmpMB, tc.pids, err)
		}
	}
}

func TestLimitsCpuset(t *testing.T) {
	lim := func(memoryMB int) Limits {
		l, err := LimitsFor(memoryMB, 64, 512)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	cases := []struct {
		name     string
		memoryMB int
		hostCPUs int
		offsets  []int
		want     []string // one per offset
	}{
		{"unknown host CPU count", 256, 0, []int{0, 1}, []string{"", ""}},
		{"1 host CPU, small", 256, 1, []int{0, 1, 2, 7}, []string{"0", "0", "0", "0"}},
		{"1 host CPU, 2-core limit", 1770, 1, []int{0, 3}, []string{"0", "0"}},
		{"2 host CPUs, small rotates", 256, 2, []int{0, 1, 2, 3}, []string{"0", "1", "0", "1"}},
		{"2 host CPUs, 2 cores", 1770, 2, []int{0, 1}, []string{"0-1", "0-1"}},
		{"2 host CPUs, 4 cores capped", 7076, 2, []int{5}, []string{"0-1"}},
		{"4 host CPUs, small rotates", 256, 4, []int{1, 2, 3, 4, 5}, []string{"1", "2", "3", "0", "1"}},
		{"4 host CPUs, 2 cores wrap", 1770, 4, []int{0, 2, 3, 4}, []string{"0,1", "2,3", "3,0", "0,1"}},
		{"4 host CPUs, 3 cores wrap", 3539, 4, []int{2}, []string{"2,3,0"}},
		{"4 host CPUs, 4 cores", 7076, 4, []int{0, 3}, []string{"0-3", "0-3"}},
		{"negative offset", 256, 4, []int{-1, -6}, []string{"1", "2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := lim(tc.memoryMB)
			for i, off := range tc.offsets {
				if got := l.cpuset(tc.hostCPUs, off); got != tc.want[i] {
					t.Errorf("%d MB on %d CPUs, offset %d: cpuset %q, want %q", tc.memoryMB, tc.hostCPUs, off, got, tc.want[i])
				}
			}
		})
	}
}

// Bandwidth follows memory like CPU: 256 MB gets 256/1769 of the per-core
// rate, 1769 MB all of it; a service's own rate wins.
func TestBandwidthFor(t *testing.T) {
	for _, c := range []struct {
		mem, svc, perCore int
		want              int64
	}{
		{256, 0, 200, 28_942_905}, {1769, 0, 200, 200_000_000}, {7076, 0, 200, 800_000_000},
		{256, 0, 0, 28_942_905}, {256, 50, 200, 50_000_000}, {1769, 0, 1000, 1_000_000_000},
	} {
		if got := BandwidthFor(c.mem, c.svc, c.perCore); got != c.want {
			t.Errorf("BandwidthFor(%d, %d, %d) = %d, want %d", c.mem, c.svc, c.perCore, got, c.want)
		}
	}
	for in, want := range map[string]int{"200": 200, "200Mbit": 200, "200Mbit/s": 200, "200 mbps": 200, "1Gbit": 1000, "2gbit/s": 2000, "1Gbps": 1000} {
		if got, err := ParseBandwidth("bandwidth", in); err != nil || got != want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-5", "200MB", "1.5Gbit", "fast"} {
		if _, err := ParseBandwidth("bandwidth", in); err == nil {
			t.Errorf("ParseBandwidth(%q) accepted", in)
		}
	}
	cfg := ServiceConfig{Name: "x", Image: "i", BandwidthMbit: 200_000}.WithDefaults()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "bandwidth") {
		t.Errorf("bandwidth 200000: %v, want an error naming bandwidth", err)
	}
	// A rate set for the service is a new revision; none keeps the old one.
	base := ServiceConfig{Name: "x", Image: "i"}.WithDefaults()
	with := base
	with.BandwidthMbit = 50
	if base.Revision() == with.Revision() {
		t.Error("setting bandwidth kept the revision")
	}
}

// A service's own bandwidth is capped at what 4 cores get, as memory is at
// the top tier: 4 x bandwidth_per_core.
func TestServiceBandwidthCap(t *testing.T) {
	for _, c := range []struct {
		mbit, perCore int
		want          string // "" if accepted
	}{
		{0, 0, ""},
		{800, 0, ""}, // the default 200 per core
		{801, 0, "bandwidth 801 Mbit/s is more than the top tier gets: use at most 800 Mbit/s, what 4 cores get (4 x bandwidth_per_core 200 Mbit/s)"},
		{400, 100, ""},
		{401, 100, "use at most 400 Mbit/s"},
		{100_001, 100_000, "out of range"},
	} {
		err := CheckServiceBandwidth("bandwidth", c.mbit, c.perCore)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("bandwidth %d at %d per core: %v, want %q", c.mbit, c.perCore, err, c.want)
		}
	}
}
