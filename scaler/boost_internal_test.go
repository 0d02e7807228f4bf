package scaler

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStartQuota(t *testing.T) {
	l256, _ := LimitsFor(256, 64, 512)
	l1769, _ := LimitsFor(MBPerCore, 64, 512)
	l3000, _ := LimitsFor(3000, 64, 512)
	for _, tc := range []struct {
		name    string
		l       Limits
		cores   float64
		visible int
		want    int64
	}{
		{"256 MB, default boost capped by one visible core", l256, 2, 1, 100000},
		{"256 MB, half a core", l256, 0.5, 1, 50000},
		{"256 MB, boost below its quota", l256, 0.1, 1, 0},
		{"256 MB, off", l256, 0, 1, 0},
		{"1769 MB already has its core", l1769, 2, 1, 0},
		{"3000 MB: 1.7 cores, two visible", l3000, 2, 2, 200000},
	} {
		if got := tc.l.startQuota(tc.cores, tc.visible); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestSetCgroupCPU(t *testing.T) {
	root := t.TempDir()
	proc, cg := filepath.Join(root, "proc"), filepath.Join(root, "cgroup")
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// cgroup v1, cpu and cpuacct mounted together.
	write(filepath.Join(proc, "10", "cgroup"), "12:pids:/machine.slice/libpod-abc.scope\n4:cpu,cpuacct:/machine.slice/libpod-abc.scope\n0::/\n")
	q1 := filepath.Join(cg, "cpu,cpuacct", "machine.slice", "libpod-abc.scope", "cpu.cfs_quota_us")
	write(q1, "100000")
	if err := setCgroupCPU(proc, cg, 10, 14471, 100000); err != nil {
		t.Fatal(err)
	}
	if got := read(q1); got != "14471" {
		t.Errorf("v1 quota %q", got)
	}
	// cgroup v2.
	cg2 := filepath.Join(root, "cgroup2")
	write(filepath.Join(cg2, "cgroup.controllers"), "cpu pids")
	write(filepath.Join(proc, "20", "cgroup"), "0::/machine.slice/libpod-def.scope/container\n")
	q2 := filepath.Join(cg2, "machine.slice", "libpod-def.scope", "container", "cpu.max")
	write(q2, "100000 100000")
	if err := setCgroupCPU(proc, cg2, 20, 14471, 100000); err != nil {
		t.Fatal(err)
	}
	if got := read(q2); got != "14471 100000" {
		t.Errorf("v2 cpu.max %q", got)
	}
	// No process, no cpu cgroup.
	if err := setCgroupCPU(proc, cg, 99, 1, 1); err == nil {
		t.Error("no error for a missing process")
	}
	write(filepath.Join(proc, "30", "cgroup"), "12:pids:/x\n")
	if err := setCgroupCPU(proc, cg, 30, 1, 1); err == nil {
		t.Error("no error without a cpu cgroup")
	}
}
