package scaler

import "fmt"

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
