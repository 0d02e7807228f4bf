package scaler

import (
	"fmt"
	"strconv"
	"strings"
)

// The service doc ties CPU to memory: one core per 1769 MB, a fraction of a
// core below that, at most 4 cores (7076 MB). We implement the rule exactly:
//
//	cpu quota (cores) = memory_MB / 1769
//	visible cores     = ceil(memory_MB / 1769)
//
// so 256 MB gets 0.1447 core. The doc's own table says 14.1 % for 256 MB and
// 10.8 % for 192 MB, which no single linear rule reproduces together with the
// 1769 MB per core rows; we keep the rule the core rows state. MB here means
// MiB (2^20 bytes), as in Docker's and Podman's memory flags.
const (
	MBPerCore   = 1769
	MinMemoryMB = 128
	MaxMemoryMB = 4 * MBPerCore // 7076

	cpuPeriod = 100000 // µs, the kernel's default CFS period
)

// Limits are the cgroup and sandbox limits of one instance.
type Limits struct {
	MemoryMB  int
	TmpMB     int   // size cap of the /tmp tmpfs; it counts against memory
	PidsLimit int64 // maximum number of processes and threads
	CPUQuota  int64 // µs of CPU per cpuPeriod
	CPUPeriod int64
	// StartCPUQuota, if set, is the quota the instance starts with, until
	// its app answers (the startup boost, see boost.go).
	StartCPUQuota int64
	CPUs          int // visible cores (cpuset size)
	// BandwidthBps is the instance's rate in each direction, in bits per
	// second (see BandwidthFor); the scaler sets it from its options.
	BandwidthBps int64
}

// CheckMemory says whether memoryMB is a size an instance can have.
func CheckMemory(memoryMB int) error {
	if memoryMB < MinMemoryMB || memoryMB > MaxMemoryMB {
		return fmt.Errorf("memory %d MB is out of range: use %d MB to %d MB (4 cores)", memoryMB, MinMemoryMB, MaxMemoryMB)
	}
	return nil
}

// LimitsFor derives an instance's limits from its memory size.
func LimitsFor(memoryMB, tmpMB int, pids int64) (Limits, error) {
	if err := CheckMemory(memoryMB); err != nil {
		return Limits{}, err
	}
	if tmpMB < 1 || tmpMB > memoryMB {
		return Limits{}, fmt.Errorf("tmp_size %d MB is out of range: /tmp lives in the instance's memory, use 1 MB to the memory size (%d MB)", tmpMB, memoryMB)
	}
	if pids < 16 {
		return Limits{}, fmt.Errorf("pids_limit %d is too small: use at least 16", pids)
	}
	return Limits{
		MemoryMB:  memoryMB,
		TmpMB:     tmpMB,
		PidsLimit: pids,
		CPUQuota:  int64(memoryMB) * cpuPeriod / MBPerCore,
		CPUPeriod: cpuPeriod,
		CPUs:      (memoryMB + MBPerCore - 1) / MBPerCore,
	}, nil
}

// Cores is the CPU quota in cores.
func (l Limits) Cores() float64 { return float64(l.CPUQuota) / float64(l.CPUPeriod) }

// MemoryBytes is the memory limit in bytes.
func (l Limits) MemoryBytes() int64 { return int64(l.MemoryMB) << 20 }

// cpuset returns the cpuset string for an instance: l.CPUs cores (at most the
// host's), starting at a rotating offset so small services spread over cores.
func (l Limits) cpuset(hostCPUs, offset int) string {
	n := l.CPUs
	if hostCPUs <= 0 || n >= hostCPUs {
		if hostCPUs <= 0 {
			return ""
		}
		if hostCPUs == 1 {
			return "0"
		}
		return fmt.Sprintf("0-%d", hostCPUs-1)
	}
	if offset < 0 {
		offset = -offset
	}
	start := offset % hostCPUs
	cpus := ""
	for i := 0; i < n; i++ {
		if i > 0 {
			cpus += ","
		}
		cpus += fmt.Sprint((start + i) % hostCPUs)
	}
	return cpus
}

// Bandwidth follows memory as CPU does: bandwidth_per_core (default 200
// Mbit/s) times the instance's cores, memory_MB/1769, so 256 MB gets 28.9
// Mbit/s and 1769 MB 200 Mbit/s. A service may set its own rate instead.
const (
	DefaultBandwidthPerCoreMbit = 200
	MaxBandwidthMbit            = 100_000 // 100 Gbit/s: more than any link this runs on
)

// CheckBandwidth says whether mbit is a rate option (named by what) can
// take.
func CheckBandwidth(what string, mbit int) error {
	if mbit < 1 || mbit > MaxBandwidthMbit {
		return fmt.Errorf("%s %d Mbit/s is out of range: use 1 to %d Mbit/s (e.g. %s 50Mbit)", what, mbit, MaxBandwidthMbit, what)
	}
	return nil
}

// MaxServiceBandwidthMbit is the most a service's own bandwidth may be:
// what 4 cores get (4 x bandwidth_per_core), as memory, and with it CPU,
// stops at 4 cores. perCoreMbit 0 is the default.
func MaxServiceBandwidthMbit(perCoreMbit int) int {
	if perCoreMbit <= 0 {
		perCoreMbit = DefaultBandwidthPerCoreMbit
	}
	return perCoreMbit * MaxMemoryMB / MBPerCore
}

// CheckServiceBandwidth says whether a service's own bandwidth (option
// what; 0: none, its memory's) is one it can have under perCoreMbit.
func CheckServiceBandwidth(what string, mbit, perCoreMbit int) error {
	if mbit == 0 {
		return nil
	}
	if err := CheckBandwidth(what, mbit); err != nil {
		return err
	}
	if top := MaxServiceBandwidthMbit(perCoreMbit); mbit > top {
		return fmt.Errorf("%s %d Mbit/s is more than the top tier gets: use at most %d Mbit/s, what 4 cores get (4 x bandwidth_per_core %d Mbit/s), or raise bandwidth_per_core",
			what, mbit, top, top/(MaxMemoryMB/MBPerCore))
	}
	return nil
}

// BandwidthFor is an instance's rate in bits per second, in each
// direction: serviceMbit if set, else perCoreMbit times memoryMB/1769.
func BandwidthFor(memoryMB, serviceMbit, perCoreMbit int) int64 {
	if serviceMbit > 0 {
		return int64(serviceMbit) * 1_000_000
	}
	if perCoreMbit <= 0 {
		perCoreMbit = DefaultBandwidthPerCoreMbit
	}
	return int64(perCoreMbit) * 1_000_000 * int64(memoryMB) / MBPerCore
}

// ParseBandwidth reads option what's rate in Mbit/s: "200", "200Mbit", "200Mbit/s",
// "200Mbps", "1Gbit", "1Gbit/s" or "1Gbps". Bits, not bytes: "MB" is
// refused, since it would mean 8 times the rate in tc's and most people's
// reading.
func ParseBandwidth(what, s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"mbit/s", 1}, {"mbit", 1}, {"mbps", 1}, {"gbit/s", 1000}, {"gbit", 1000}, {"gbps", 1000}} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s %q: use a whole number of Mbit/s or Gbit/s, e.g. %s 200Mbit or %s 1Gbit", what, s, what, what)
	}
	return n * mult, nil
}
