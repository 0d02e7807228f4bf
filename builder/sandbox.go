package builder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/system"
)

// Limits bound what one build may use while its RUN steps (the build
// command, package managers and their install scripts, all code from the
// repository) run. Zero fields take the Builder's, then the defaults.
type Limits struct {
	// MemoryMB is the memory of each build step, swap included (default
	// 2048). A step that needs more is killed by the kernel.
	MemoryMB int
	// CPUs is the CPU time of each build step, in cores (default 1).
	CPUs float64
	// Pids bounds the processes and threads of a build at once (default
	// 1024): a fork bomb stops there.
	Pids int
	// Timeout bounds the image build's wall clock, clone and queue wait
	// not included (default 15m).
	Timeout time.Duration
}

// Default build limits.
const (
	DefaultBuildMemoryMB = 2048
	DefaultBuildCPUs     = 1.0
	DefaultBuildPids     = 1024
	DefaultBuildTimeout  = 15 * time.Minute
)

// Bounds of the build limits: below them no package manager runs.
const (
	MinBuildMemoryMB = 64
	MinBuildCPUs     = 0.01
	MinBuildPids     = 16
	MinBuildTimeout  = 10 * time.Second
)

// Validate checks l, naming the option (as the Caddyfile spells it) and
// the fix. Zero fields are valid: they take the defaults.
func (l Limits) Validate() error {
	switch {
	case l.MemoryMB < 0 || (l.MemoryMB > 0 && l.MemoryMB < MinBuildMemoryMB):
		return &InputError{Field: "build_memory", Value: strconv.Itoa(l.MemoryMB) + "MB",
			Reason: fmt.Sprintf("is too small: give at least %dMB, e.g. build_memory 2GiB", MinBuildMemoryMB)}
	case l.CPUs < 0 || (l.CPUs > 0 && l.CPUs < MinBuildCPUs) || l.CPUs > 1024:
		return &InputError{Field: "build_cpus", Value: strconv.FormatFloat(l.CPUs, 'g', -1, 64),
			Reason: fmt.Sprintf("is out of range: give cores from %g, e.g. build_cpus 1 or 0.5", MinBuildCPUs)}
	case l.Pids < 0 || (l.Pids > 0 && l.Pids < MinBuildPids):
		return &InputError{Field: "build_pids", Value: strconv.Itoa(l.Pids),
			Reason: fmt.Sprintf("is too small: give at least %d processes, e.g. build_pids 1024", MinBuildPids)}
	case l.Timeout < 0 || (l.Timeout > 0 && l.Timeout < MinBuildTimeout):
		return &InputError{Field: "build_timeout", Value: l.Timeout.String(),
			Reason: fmt.Sprintf("is too short: give at least %s, e.g. build_timeout 15m", MinBuildTimeout)}
	}
	return nil
}

// WithDefaults fills l's zero fields with the default limits.
func (l Limits) WithDefaults() Limits { return l.or(defaultLimits) }

// Within checks that l (its zero fields taking max's) raises none of
// max's limits, naming the first it raises. The admin API's services may
// lower their build limits below the config's, never raise them: anyone
// who reaches the API could otherwise give a build all the host's memory
// and processes, for as long as it likes.
func (l Limits) Within(max Limits) error {
	l = l.or(max)
	over := func(field, v, m string) error {
		return &InputError{Field: field, Value: v,
			Reason: fmt.Sprintf("is over the config's %s %s: a service declared through the admin API may lower its build limits, not raise them; raise the global option in the config instead", field, m)}
	}
	switch {
	case l.MemoryMB > max.MemoryMB:
		return over("build_memory", strconv.Itoa(l.MemoryMB)+"MB", strconv.Itoa(max.MemoryMB)+"MB")
	case l.CPUs > max.CPUs:
		return over("build_cpus", strconv.FormatFloat(l.CPUs, 'g', -1, 64), strconv.FormatFloat(max.CPUs, 'g', -1, 64))
	case l.Pids > max.Pids:
		return over("build_pids", strconv.Itoa(l.Pids), strconv.Itoa(max.Pids))
	case l.Timeout > max.Timeout:
		return over("build_timeout", l.Timeout.String(), max.Timeout.String())
	}
	return nil
}

// or fills l's zero fields from d.
func (l Limits) or(d Limits) Limits {
	if l.MemoryMB == 0 {
		l.MemoryMB = d.MemoryMB
	}
	if l.CPUs == 0 {
		l.CPUs = d.CPUs
	}
	if l.Pids == 0 {
		l.Pids = d.Pids
	}
	if l.Timeout == 0 {
		l.Timeout = d.Timeout
	}
	return l
}

var defaultLimits = Limits{MemoryMB: DefaultBuildMemoryMB, CPUs: DefaultBuildCPUs, Pids: DefaultBuildPids, Timeout: DefaultBuildTimeout}

// buildCaps are the only capabilities a build step keeps (Podman's default
// set also has NET_BIND_SERVICE, SETFCAP, SETPCAP and SYS_CHROOT). They are
// what apt-get (dpkg's chown/chmod, its _apt download sandbox: SETUID,
// SETGID, KILL), pip and npm need; tried by installing packages with
// apt-get (one whose postinst sets file capabilities among them), pip and
// npm on the Debian runtime images.
var buildCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID"}

// LimitError is a build stopped by one of its limits. Option is the option
// that sets it (build_memory, build_pids, build_timeout).
type LimitError struct {
	Option string
	Msg    string
	Err    error
}

func (e *LimitError) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	return e.Msg + ": " + e.Err.Error()
}

func (e *LimitError) Unwrap() error { return e.Err }

func memoryLimitError(l Limits, err error) error {
	return &LimitError{Option: "build_memory", Err: err,
		Msg: fmt.Sprintf("a build step ran out of memory (build memory limit %s): raise build_memory or make the step use less", formatMB(l.MemoryMB))}
}

func pidsLimitError(l Limits, err error) error {
	return &LimitError{Option: "build_pids", Err: err,
		Msg: fmt.Sprintf("a build step reached the process limit (build_pids %d processes and threads at once): raise build_pids or make the step start fewer processes", l.Pids)}
}

func timeoutLimitError(l Limits, err error) error {
	return &LimitError{Option: "build_timeout", Err: err,
		Msg: fmt.Sprintf("the build ran longer than its time limit (build_timeout %s): raise build_timeout or make the build faster", l.Timeout)}
}

func formatMB(mb int) string {
	if mb%1024 == 0 {
		return fmt.Sprintf("%d GiB", mb/1024)
	}
	return fmt.Sprintf("%d MiB", mb)
}

// killedByOOM says whether a failed RUN step's error is what a kernel OOM
// kill gives: buildah reports the step's exit status, 137 (128 + SIGKILL),
// or the signal. Nothing else in a build sends SIGKILL (a timeout cancels
// the request and is told apart by its context).
func killedByOOM(err error) bool {
	s := err.Error()
	return strings.Contains(s, "exit status 137") || strings.Contains(s, "signal: killed")
}

// The pids limit. Podman's build API (4.3 and still 5.x) takes no pids
// limit, and its ulimit nproc counts per host uid, which without a user
// namespace is host root's every process. What it does honour is a cgroup
// parent: with the cgroupfs manager, each RUN step's container is created
// at exactly that cgroup path and removed after the step. So each build
// gets a cgroup podcell makes, /podcell-builds/<id>, with pids.max set, and
// its steps run in /podcell-builds/<id>/step below it: the kernel counts
// the step's tasks against the parent's pids.max. This needs rootful Podman
// with the cgroupfs manager on cgroup v1 on the host podcell runs on, with
// podcell able to write the cgroup tree (root): this project's hosts.
// Elsewhere the build log says the pids limit is not enforced.

const cgroupRoot = "/sys/fs/cgroup"

// cgroupSupport is what the first build found out about the host.
type cgroupSupport struct {
	once sync.Once
	ok   bool
	why  string // why the pids limit cannot be enforced
}

func (b *Builder) pidsCgroupSupport(ctx context.Context) (bool, string) {
	b.cg.once.Do(func() {
		info, err := system.Info(b.rt.BindingsContext(ctx), nil)
		switch {
		case err != nil:
			b.cg.why = fmt.Sprintf("podman info: %v", err)
		case info.Host.Security.Rootless:
			b.cg.why = "Podman runs rootless"
		case info.Host.CgroupManager != "cgroupfs":
			b.cg.why = fmt.Sprintf("Podman's cgroup manager is %s, not cgroupfs", info.Host.CgroupManager)
		case info.Host.CgroupsVersion != "v1":
			b.cg.why = fmt.Sprintf("the host runs cgroup %s, not v1", info.Host.CgroupsVersion)
		default:
			dir := filepath.Join(cgroupRoot, "pids", "podcell-builds")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.cg.why = fmt.Sprintf("cannot make the build cgroup: %v", err)
				return
			}
			removeStaleBuildCgroups(time.Hour)
			b.cg.ok = true
		}
	})
	return b.cg.ok, b.cg.why
}

// buildCgroup is one build's pids cgroup.
type buildCgroup struct {
	name string // podcell-builds/<id>
}

func newBuildCgroup(pids int) (*buildCgroup, error) {
	var r [8]byte
	rand.Read(r[:])
	cg := &buildCgroup{name: "podcell-builds/" + hex.EncodeToString(r[:])}
	dir := filepath.Join(cgroupRoot, "pids", cg.name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make the build's pids cgroup: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.Itoa(pids)), 0o644); err != nil {
		cg.remove()
		return nil, fmt.Errorf("set the build's pids limit: %w", err)
	}
	return cg, nil
}

// parent is the cgroup each RUN step runs in (runc makes and removes it).
func (cg *buildCgroup) parent() string { return "/" + cg.name + "/step" }

// hitLimit says whether the build's tasks reached pids.max at some point.
func (cg *buildCgroup) hitLimit() bool {
	dir := filepath.Join(cgroupRoot, "pids", cg.name)
	peak, err1 := os.ReadFile(filepath.Join(dir, "pids.peak"))
	max, err2 := os.ReadFile(filepath.Join(dir, "pids.max"))
	if err1 != nil || err2 != nil {
		return false
	}
	p, err1 := strconv.Atoi(strings.TrimSpace(string(peak)))
	m, err2 := strconv.Atoi(strings.TrimSpace(string(max)))
	return err1 == nil && err2 == nil && p >= m
}

// stop ends a build the client gave up on (timeout or cancellation).
// Podman 4.3 goes on building after the client hangs up, and no API call
// cancels a build, so podcell SIGKILLs every task in the build's cgroup:
// the step fails and the build with it. With pids.max at 0 the step can
// fork nothing meanwhile. It keeps at it until no step has run for 2 s (a
// step could start after a COPY still running), at most for grace, then
// removes the cgroup. A step that starts later still has its memory and
// CPU limits, but no pids limit and no timeout.
func (cg *buildCgroup) stop(grace time.Duration) {
	dir := filepath.Join(cgroupRoot, "pids", cg.name)
	os.WriteFile(filepath.Join(dir, "pids.max"), []byte("0"), 0o644)
	go func() {
		defer cg.remove()
		end := time.Now().Add(grace)
		idle := time.Now()
		for time.Now().Before(end) && time.Since(idle) < 2*time.Second {
			procs, _ := os.ReadFile(filepath.Join(dir, "step", "cgroup.procs"))
			for _, f := range strings.Fields(string(procs)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
					idle = time.Now()
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

// removeStaleBuildCgroups removes the build cgroups an earlier podcell
// left when it stopped in the middle of a build (the removal after a
// stopped build runs in the background). Only those untouched for age go:
// a build of another podcell on the host may sit between two steps, and
// rmdir refuses a cgroup that still has a step or a task.
func removeStaleBuildCgroups(age time.Duration) {
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", "podcell-builds", "*")) // v1
	v2, _ := filepath.Glob(filepath.Join(cgroupRoot, "podcell-builds", "*"))
	for _, d := range append(dirs, v2...) {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && time.Since(fi.ModTime()) > age {
			os.Remove(d)
		}
	}
}

// remove deletes the build's cgroup from every hierarchy: runc creates the
// step's path in each controller and removes only the step itself.
func (cg *buildCgroup) remove() {
	entries, _ := os.ReadDir(cgroupRoot)
	for _, e := range entries {
		if e.IsDir() {
			os.Remove(filepath.Join(cgroupRoot, e.Name(), cg.name))
		}
	}
}

// The build queue: at most MaxBuilds builds (clone and image build) run at
// once; the others wait in arrival order (Go's channel send order is not
// strictly FIFO, but no waiter starves while slots keep freeing).

type buildQueue struct {
	slots   chan struct{}
	mu      sync.Mutex
	running map[*string]time.Time // what each running build builds, since when
}

func newBuildQueue(n int) *buildQueue {
	return &buildQueue{slots: make(chan struct{}, n), running: map[*string]time.Time{}}
}

// acquire takes a build slot for what (e.g. "https://github.com/a/b@main as
// localhost/podcell-b:3"), logging what it waits for when it must wait. It
// gives up when ctx ends.
func (q *buildQueue) acquire(ctx context.Context, what string, log *logSink) (func(), error) {
	select {
	case q.slots <- struct{}{}:
	default:
		q.mu.Lock()
		var others []string
		for w, since := range q.running {
			others = append(others, fmt.Sprintf("%s (for %s)", *w, time.Since(since).Round(time.Second)))
		}
		q.mu.Unlock()
		log.printf("==> Waiting for a build slot: %d build(s) run at once (build_concurrency); running: %s", cap(q.slots), strings.Join(others, ", "))
		log.flush()
		began := time.Now()
		select {
		case q.slots <- struct{}{}:
			log.printf("==> Got a build slot after %s", time.Since(began).Round(time.Millisecond))
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a build slot: %w", ctx.Err())
		}
	}
	key := &what
	q.mu.Lock()
	q.running[key] = time.Now()
	q.mu.Unlock()
	return func() {
		q.mu.Lock()
		delete(q.running, key)
		q.mu.Unlock()
		<-q.slots
	}, nil
}

func refOrHead(ref string) string {
	if ref == "" {
		return "HEAD"
	}
	return ref
}
