package scaler

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Startup CPU boost. A small instance's CPU quota applies from its first
// instruction: runc init, the interpreter's start-up and the app's imports
// all run at 0.145 core at 256 MB, which made a Python service's cold start
// 759 ms and a Node.js one's 1.8 s against 210 ms and 347 ms at one core
// (measured for issue 13). Like Cloud Run's startup CPU boost, an instance
// starts with a larger quota and gets its tier's the moment its app answers,
// before it takes a request. The cores it may run on (its cpuset, one core
// below 1769 MB) do not change: an app that sizes its thread pools from the
// cores it sees at start keeps seeing the same ones, and the boost is at
// most those cores.
//
// The quota is set at create (Limits.StartCPUQuota) and lowered by writing
// the container's cgroup file directly (Runtime.SetCPU): microseconds, and
// no Podman call between ready and the first request. Simultaneous cold
// starts share a budget of boost cores (Options.StartupCPUBudget): past it,
// an instance is lowered to its tier's quota right after its start and
// starts at that speed (Stats.BoostDenied counts them).

// DefaultStartupCPU is the boost, in cores, when neither the service nor
// Options set one.
const DefaultStartupCPU = 2

// startQuota is the CPU quota an instance with limits l starts with, given a
// boost of cores (0: none) and visible, the cores its cpuset holds; 0 means
// no boost (the boost would not exceed its own quota).
func (l Limits) startQuota(cores float64, visible int) int64 {
	if cores <= 0 {
		return 0
	}
	if visible > 0 && cores > float64(visible) {
		cores = float64(visible)
	}
	q := int64(cores * float64(l.CPUPeriod))
	if q <= l.CPUQuota {
		return 0
	}
	return q
}

// boostBudget is the extra CPU quota (µs per period, above each instance's
// own) that starting instances may hold at once.
type boostBudget struct {
	mu   sync.Mutex
	left int64
}

// take reserves extra µs; false if the budget has less.
func (b *boostBudget) take(extra int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if extra > b.left {
		return false
	}
	b.left -= extra
	return true
}

func (b *boostBudget) give(extra int64) {
	b.mu.Lock()
	b.left += extra
	b.mu.Unlock()
}

// canBoost: the host runs instances under a CPU quota podcell can lower
// (rootful Podman; rootless Podman's cgroups are not podcell's to write,
// and on cgroup v1 it sets no quota at all).
func (s *Scaler) canBoost() bool { return !s.host.Rootless && s.host.LimitsEnforced() }

// startupCores is the boost for cfg: its own setting, else the scaler's.
func (s *Scaler) startupCores(cfg ServiceConfig) float64 {
	if !s.canBoost() {
		return 0
	}
	if cfg.StartupCPU != 0 {
		return max(cfg.StartupCPU, 0)
	}
	return max(s.opts.StartupCPU, 0)
}

// visibleCPUs is how many cores an instance with limits l may run on: its
// cpuset (see Limits.cpuset) holds l.CPUs of the host's cores.
func (s *Scaler) visibleCPUs(l Limits) int {
	if s.host.CPUs > 0 {
		return min(l.CPUs, s.host.CPUs)
	}
	return l.CPUs
}

// setCgroupCPU sets the CPU quota of the cgroup process pid is in, found
// from /proc/<pid>/cgroup under cgroupRoot (/sys/fs/cgroup): cpu.max on
// cgroup v2, cpu.cfs_quota_us on v1.
func setCgroupCPU(procRoot, cgroupRoot string, pid int, quota, period int64) error {
	if pid <= 0 {
		return fmt.Errorf("no process to find the cgroup of (pid %d)", pid)
	}
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// "4:cpu,cpuacct:/machine.slice/libpod-<id>.scope" (v1) or
		// "0::/machine.slice/libpod-<id>.scope/container" (v2).
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err != nil {
				continue // a hybrid host's empty v2 hierarchy
			}
			p := filepath.Join(cgroupRoot, f[2], "cpu.max")
			return os.WriteFile(p, []byte(fmt.Sprintf("%d %d", quota, period)), 0)
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "cpu" {
				p := filepath.Join(cgroupRoot, f[1], f[2], "cpu.cfs_quota_us")
				if _, err := os.Stat(p); err != nil {
					p = filepath.Join(cgroupRoot, "cpu", f[2], "cpu.cfs_quota_us")
				}
				return os.WriteFile(p, []byte(strconv.FormatInt(quota, 10)), 0)
			}
		}
	}
	return fmt.Errorf("process %d is in no cpu cgroup", pid)
}

// SetCPU lowers (or raises) a running container's CPU quota by writing its
// cgroup, without a Podman call; pid is its process (ContainerInfo.Pid).
func (p *Podman) SetCPU(ctx context.Context, id string, pid int, quota, period int64) error {
	if err := setCgroupCPU("/proc", "/sys/fs/cgroup", pid, quota, period); err != nil {
		return fmt.Errorf("set the CPU quota of container %s: %w", id, err)
	}
	return nil
}
