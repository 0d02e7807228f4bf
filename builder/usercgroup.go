package builder

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// userCgroup is the cgroup a build as the build user runs in. podcell
// makes it, sets the build's limits on it and moves the podman CLI into it
// before the CLI runs anything; every process the build starts (podman's
// re-exec in the user namespace, runc, the RUN steps) inherits it, since
// rootless Podman makes no cgroup of its own on cgroup v1 (nor may it) and
// on cgroup v2 without systemd. The limits then hold the whole build, not
// each step: podman itself counts against build_memory.
//
// cgroup v1 (this project's hosts): memory (limit and memory+swap), cpu
// (CFS quota) and pids, each a directory podcell-builds/<id> of its
// hierarchy. cgroup v2: one directory /sys/fs/cgroup/podcell-builds/<id>
// with memory.max, memory.swap.max, cpu.max and pids.max, the controllers
// enabled on the way down.
type userCgroup struct {
	v2   bool
	name string // podcell-builds/<id>
}

// cgroupV2 says whether /sys/fs/cgroup is the unified hierarchy.
func cgroupV2() bool {
	var st syscall.Statfs_t
	return syscall.Statfs(cgroupRoot, &st) == nil && st.Type == 0x63677270 // CGROUP2_SUPER_MAGIC
}

// podmanPids is what pids.max allows on top of build_pids for podman's own
// processes and threads, which share the build's cgroup: a two-step build
// peaked at 29 pids here (pids.peak), podman and runc with their threads.
// Without it a fork bomb of the steps starves podman of threads.
const podmanPids = 64

// staleOnce removes, before the first build, the cgroups of builds an
// earlier podcell left when it stopped in the middle of them.
var staleOnce sync.Once

func newUserCgroup(lim Limits) (*userCgroup, error) {
	staleOnce.Do(func() { removeStaleBuildCgroups(time.Hour) })
	var r [8]byte
	rand.Read(r[:])
	cg := &userCgroup{v2: cgroupV2(), name: "podcell-builds/" + hex.EncodeToString(r[:])}
	mem := strconv.FormatInt(int64(lim.MemoryMB)<<20, 10)
	quota := strconv.FormatInt(int64(lim.CPUs*100000), 10)
	pids := strconv.Itoa(lim.Pids + podmanPids)
	// Each setting: controller (v1), file, value; an optional one may be
	// missing (memsw without swap accounting: then there is no swap to
	// limit either).
	type setting struct {
		ctl, file, value string
		optional         bool
	}
	var settings []setting
	if cg.v2 {
		// The controllers must be enabled in every parent's subtree_control.
		for _, dir := range []string{cgroupRoot, filepath.Join(cgroupRoot, "podcell-builds")} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("make the build's cgroup: %w", err)
			}
			if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu +pids"), 0o644); err != nil {
				return nil, fmt.Errorf("enable the memory, cpu and pids controllers in %s: %w", dir, err)
			}
		}
		settings = []setting{
			{"", "memory.max", mem, false},
			{"", "memory.swap.max", "0", true},
			{"", "cpu.max", quota + " 100000", false},
			{"", "pids.max", pids, false},
		}
	} else {
		settings = []setting{
			{"memory", "memory.limit_in_bytes", mem, false},
			{"memory", "memory.memsw.limit_in_bytes", mem, true}, // after the limit: it must be at least that
			{"cpu", "cpu.cfs_period_us", "100000", false},
			{"cpu", "cpu.cfs_quota_us", quota, false},
			{"pids", "pids.max", pids, false},
		}
	}
	for _, dir := range cg.dirs() {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			cg.remove()
			return nil, fmt.Errorf("make the build's cgroup: %w", err)
		}
	}
	for _, s := range settings {
		f := filepath.Join(cg.dir(s.ctl), s.file)
		if err := os.WriteFile(f, []byte(s.value), 0o644); err != nil && !(s.optional && errors.Is(err, os.ErrNotExist)) {
			cg.remove()
			return nil, fmt.Errorf("set the build's limit %s: %w", f, err)
		}
	}
	return cg, nil
}

// dir is the build's directory of controller ctl (v1) or its only one (v2).
func (cg *userCgroup) dir(ctl string) string {
	if cg.v2 {
		return filepath.Join(cgroupRoot, cg.name)
	}
	return filepath.Join(cgroupRoot, ctl, cg.name)
}

func (cg *userCgroup) dirs() []string {
	if cg.v2 {
		return []string{cg.dir("")}
	}
	return []string{cg.dir("memory"), cg.dir("cpu"), cg.dir("pids")}
}

// enter moves process pid into the cgroup.
func (cg *userCgroup) enter(pid int) error {
	for _, dir := range cg.dirs() {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("move the build into its cgroup %s: %w", dir, err)
		}
	}
	return nil
}

// procs are the processes in the cgroup now.
func (cg *userCgroup) procs() []int {
	data, _ := os.ReadFile(filepath.Join(cg.dir("pids"), "cgroup.procs"))
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out
}

// counter reads the count key has in a flat keyed file such as
// memory.events ("oom_kill 1") or pids.events ("max 12").
func counter(file, key string) int {
	data, _ := os.ReadFile(file)
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key+" "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// oomKilled says whether the kernel killed a process of the build for
// memory.
func (cg *userCgroup) oomKilled() bool {
	if cg.v2 {
		return counter(filepath.Join(cg.dir(""), "memory.events"), "oom_kill") > 0
	}
	return counter(filepath.Join(cg.dir("memory"), "memory.oom_control"), "oom_kill") > 0
}

// hitPids says whether a fork of the build was refused at pids.max.
func (cg *userCgroup) hitPids() bool {
	return counter(filepath.Join(cg.dir("pids"), "pids.events"), "max") > 0
}

// kill ends every process of the build (the podman CLI too: Podman 4.3
// has no way to cancel a build) and waits, at most for grace, until none
// is left. With pids.max at 0 nothing forks meanwhile.
func (cg *userCgroup) kill(grace time.Duration) {
	os.WriteFile(filepath.Join(cg.dir("pids"), "pids.max"), []byte("0"), 0o644)
	if cg.v2 {
		os.WriteFile(filepath.Join(cg.dir(""), "cgroup.kill"), []byte("1"), 0o644)
	}
	end := time.Now().Add(grace)
	for time.Now().Before(end) {
		procs := cg.procs()
		if len(procs) == 0 {
			return
		}
		for _, pid := range procs {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// remove deletes the cgroup's directories; one that still has a process
// stays (for removeStaleBuildCgroups).
func (cg *userCgroup) remove() {
	for _, dir := range cg.dirs() {
		os.Remove(dir)
	}
}
