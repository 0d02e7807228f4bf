package builder

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostileOnce serves hostile.git beside the fixture repositories: code an
// attacker who controls a repository would commit, run by the build
// command as it would be by an install script.
var (
	hostileOnce sync.Once
	hostileErr  error
)

const hostileFiles = `hog.py: allocates far more than a build may (written, so every page counts)
bomb.sh: a fork bomb that never ends
`

func hostileRepo(t *testing.T) string {
	t.Helper()
	f := repos(t)
	hostileOnce.Do(func() {
		dir := filepath.Join(fixtureDir, "hostile-work")
		g := &gitCmd{env: []string{
			"HOME=" + fixtureDir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_AUTHOR_NAME=attacker", "GIT_AUTHOR_EMAIL=a@podcell.invalid",
			"GIT_COMMITTER_NAME=attacker", "GIT_COMMITTER_EMAIL=a@podcell.invalid",
		}}
		g.run(fixtureDir, "init", "-q", "-b", "main", dir)
		g.write(filepath.Join(dir, "Procfile"), "web: python3 -m http.server $PORT\n")
		g.write(filepath.Join(dir, "hog.py"), "import sys\nprint('allocating', flush=True)\nb = b'x' * (int(sys.argv[1]) << 20)\nprint('allocated', len(b), flush=True)\n")
		g.write(filepath.Join(dir, "bomb.sh"), "bomb() { bomb | bomb & }\nbomb\nsleep 3600\n")
		g.write(filepath.Join(dir, "README"), hostileFiles)
		g.run(dir, "add", "-A")
		g.run(dir, "commit", "-q", "-m", "hostile")
		g.run(fixtureDir, "clone", "-q", "--bare", dir, filepath.Join(fixtureDir, "served", "hostile.git"))
		hostileErr = g.err
	})
	if hostileErr != nil {
		t.Fatal(hostileErr)
	}
	return f.url("hostile.git")
}

// sandboxEnv is a buildEnv whose builder has the given limits.
func sandboxEnv(t *testing.T, lim Limits) (*buildEnv, string) {
	t.Helper()
	url := hostileRepo(t)
	e := newBuildEnv(t)
	e.needBase("python3.11-debian")
	b, err := New(e.rt, Options{BaseImages: testBaseImages, CloneTimeout: time.Minute, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	e.b = b
	return e, url
}

// failBuild runs a build that must fail and returns its error and log.
func (e *buildEnv) failBuild(spec Spec, tag string) (error, []string) {
	e.t.Helper()
	var mu sync.Mutex
	var lines []string
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	_, err := e.b.Build(ctx, spec, tag, func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() })
	if err == nil {
		e.t.Fatalf("the build succeeded; log:\n%s", strings.Join(lines, "\n"))
	}
	e.t.Logf("error: %v", err)
	if e.imageExists(tag) {
		e.t.Errorf("image %s exists after a failed build", tag)
	}
	return err, lines
}

func limitOption(err error) string {
	var le *LimitError
	if errors.As(err, &le) {
		return le.Option
	}
	return ""
}

// TestBuildSandboxLimits: a build step sees the capability set cut to
// buildCaps and the memory and CPU limits asked for, and runs in the
// build's pids cgroup. The uid map is only logged: builds run rootless, in
// the build user's namespace, which TestBuildUserNamespace checks.
func TestBuildSandboxLimits(t *testing.T) {
	e, url := sandboxEnv(t, Limits{MemoryMB: 300, CPUs: 0.5, Pids: 200, Timeout: 2 * time.Minute})
	nonce := randHex(6) // a new step every run: no layer cache
	spec := Spec{Source: Source{URL: url}, Runtime: "python3.11-debian", Build: "echo run " + nonce + "\n" +
		"grep -E '^(CapEff|CapBnd|CapPrm)' /proc/self/status\n" +
		"echo UIDMAP $(cat /proc/self/uid_map)\n" +
		// A rootless step sees the host's cgroup tree: its own cgroups are
		// at the paths /proc/self/cgroup names.
		"mem=/sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)\n" +
		"cpu=/sys/fs/cgroup/cpu$(sed -n 's/^[0-9]*:cpu://p' /proc/self/cgroup)\n" +
		"echo MEM $(cat $mem/memory.limit_in_bytes) SWAP $(cat $mem/memory.memsw.limit_in_bytes)\n" +
		"echo QUOTA $(cat $cpu/cpu.cfs_quota_us) PERIOD $(cat $cpu/cpu.cfs_period_us)\n" +
		"echo PIDSCG $(grep :pids: /proc/self/cgroup)"}
	res, _ := e.build(spec, e.tag("sandbox"))
	log := strings.Join(res.Log, "\n")
	want := fmt.Sprintf("%016x", uint64(0xfb)) // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
	for _, c := range []string{"CapEff", "CapBnd", "CapPrm"} {
		if !strings.Contains(log, c+":\t"+want) {
			t.Errorf("%s is not %s (buildCaps):\n%s", c, want, log)
		}
	}
	for _, w := range []string{"MEM 314572800 SWAP 314572800", "QUOTA 50000 PERIOD 100000", ":pids:/podcell-builds/"} {
		if !strings.Contains(log, w) {
			t.Errorf("no %q in the log:\n%s", w, log)
		}
	}
	for _, l := range res.Log {
		if strings.HasPrefix(l, "UIDMAP ") {
			t.Logf("build step uid map: %s", l)
		}
	}
}

// TestBuildMemoryLimit: a build step that allocates more than the build
// memory limit is killed, the host stays responsive meanwhile (this
// process can still start programs), and the build fails naming
// build_memory; afterwards neither its cgroup nor its processes are left.
func TestBuildMemoryLimit(t *testing.T) {
	e, url := sandboxEnv(t, Limits{MemoryMB: 128, Timeout: 2 * time.Minute})
	cgroupsBefore := buildCgroups()
	mark := "podcell-hog-" + randHex(4)
	spec := Spec{Source: Source{URL: url}, Runtime: "python3.11-debian", Build: "echo run " + mark + "\npython3 hog.py 400 " + mark}
	probe := startSpawnProbe(t)
	err, lines := e.failBuild(spec, e.tag("oom"))
	probe.stop("the memory hog")
	if limitOption(err) != "build_memory" || !strings.Contains(err.Error(), "build memory limit 128 MiB") || !strings.Contains(err.Error(), "raise build_memory") {
		t.Errorf("err = %v, want one naming the memory limit", err)
	}
	log := strings.Join(lines, "\n")
	if !strings.Contains(log, "allocating") || strings.Contains(log, "allocated ") {
		t.Errorf("the step did not start allocating, or finished:\n%s", log)
	}
	waitProcsGone(t, mark)
	waitCgroupsGone(t, cgroupsBefore)
}

// spawnProbe starts a program every 200 ms while a hostile build runs: a
// host that cannot fork or that stalls shows in its counts.
type spawnProbe struct {
	t                         *testing.T
	began                     time.Time
	done                      chan struct{}
	wg                        sync.WaitGroup
	spawns, spawnFails, ticks int
	slowest                   time.Duration
}

func startSpawnProbe(t *testing.T) *spawnProbe {
	p := &spawnProbe{t: t, began: time.Now(), done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-tick.C:
				p.ticks++
				began := time.Now()
				if err := exec.Command("true").Run(); err != nil {
					p.spawnFails++
					t.Logf("spawn true: %v", err)
				} else {
					p.spawns++
				}
				if d := time.Since(began); d > p.slowest {
					p.slowest = d
				}
			}
		}
	}()
	return p
}

// stop ends the probe and fails the test if a spawn failed, none
// succeeded, or one took more than a sanity bound (not a benchmark).
func (p *spawnProbe) stop(during string) {
	p.t.Helper()
	close(p.done)
	p.wg.Wait()
	p.t.Logf("during %s (%s): %d ticks, %d spawns of true (%d failed), slowest spawn %s", during, time.Since(p.began).Round(time.Millisecond),
		p.ticks, p.spawns, p.spawnFails, p.slowest.Round(time.Millisecond))
	if p.spawnFails > 0 || p.spawns == 0 {
		p.t.Errorf("the host could not start processes during %s: %d of %d failed", during, p.spawnFails, p.spawns+p.spawnFails)
	}
	if p.slowest > 10*time.Second {
		p.t.Errorf("starting `true` took %s during %s", p.slowest, during)
	}
}

// TestBuildForkBomb: a build step that forks without end stops at the pids
// limit, the host stays responsive (this process can still start programs,
// and a ticker keeps ticking), the build timeout stops it, and the build
// fails naming build_pids; none of its processes are left.
func TestBuildForkBomb(t *testing.T) {
	e, url := sandboxEnv(t, Limits{Pids: 64, Timeout: 20 * time.Second})
	cgroupsBefore := buildCgroups()
	spec := Spec{Source: Source{URL: url}, Runtime: "python3.11-debian", Build: "echo run " + randHex(6) + "\nsh bomb.sh"}
	probe := startSpawnProbe(t)
	err, _ := e.failBuild(spec, e.tag("forkbomb"))
	probe.stop("the fork bomb")
	// The bomb runs until the timeout, unless podman's own runc cannot fork
	// either and the step fails first (CI saw that): either way the error
	// names the pids limit, and the timeout when that is what ended it.
	if limitOption(err) != "build_pids" || !strings.Contains(err.Error(), "build_pids 64") {
		t.Errorf("err = %v, want one naming the pids limit", err)
	}
	if strings.Contains(err.Error(), context.DeadlineExceeded.Error()) != strings.Contains(err.Error(), "build_timeout 20s") {
		t.Errorf("err = %v: it names the timeout if and only if the timeout ended the build", err)
	}
	// The bomb's processes are killed, though Podman would go on building.
	waitProcsGone(t, "bomb.sh")
	waitCgroupsGone(t, cgroupsBefore)
}

// waitProcsGone waits until no process's command line holds pattern (a
// step's mark), at most 30 s.
func waitProcsGone(t *testing.T, pattern string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-c", "-f", pattern).Output()
		n := 0
		fmt.Sscan(strings.TrimSpace(string(out)), &n)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d processes of the build step (%s) still run 30 s after the build failed", n, pattern)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// buildCgroups lists the build cgroups there are now.
func buildCgroups() map[string]bool {
	left, _ := filepath.Glob(filepath.Join(cgroupRoot, "pids", "podcell-builds", "*", "pids.max"))
	set := map[string]bool{}
	for _, p := range left {
		set[p] = true
	}
	return set
}

// waitCgroupsGone waits for the pids cgroups of the builds since before
// was taken to be removed. Those of other processes (a Caddy stopped in
// the middle of a build leaves its build's) are not this test's.
func waitCgroupsGone(t *testing.T, before map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		for p := range buildCgroups() {
			if !before[p] {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("build cgroups left 30 s after the build: %v", left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestBuildTimeout: a build step that runs past build_timeout is stopped
// and the build fails naming build_timeout.
func TestBuildTimeout(t *testing.T) {
	e, url := sandboxEnv(t, Limits{Timeout: 10 * time.Second})
	cgroupsBefore := buildCgroups()
	mark := "podcell-sleep-" + randHex(4)
	spec := Spec{Source: Source{URL: url}, Runtime: "python3.11-debian", Build: "echo run " + mark + "\nsleep 3600"}
	err, _ := e.failBuild(spec, e.tag("timeout"))
	if limitOption(err) != "build_timeout" || !strings.Contains(err.Error(), "build_timeout 10s") {
		t.Errorf("err = %v, want one naming build_timeout", err)
	}
	waitProcsGone(t, mark)
	waitCgroupsGone(t, cgroupsBefore)
	if e.b.user != nil {
		// The killed build's working container is removed from the build
		// user's store (podman lists buildah's as "Storage").
		out, err := e.b.user.output(context.Background(), nil, "ps", "--all", "--external", "--format", "{{.ID}} {{.Status}}")
		if err != nil || strings.Contains(string(out), "Storage") {
			t.Errorf("working containers left in the build user's store: %s %v", out, err)
		}
	}
}

// TestBuildQueue: with one build slot, a second build waits, says so and
// for what, and leaves the queue when its context ends. No Podman needed.
func TestBuildQueue(t *testing.T) {
	q := newBuildQueue(1)
	release, err := q.acquire(context.Background(), "https://example.invalid/a.git@main as localhost/a:1", newLogSink(nil, 100))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	log := newLogSink(func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() }, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := q.acquire(ctx, "https://example.invalid/b.git@HEAD as localhost/b:1", log)
		done <- err
	}()
	for {
		mu.Lock()
		n := len(lines)
		mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled waiter: err = %v", err)
	}
	if !strings.Contains(lines[0], "Waiting for a build slot") || !strings.Contains(lines[0], "a.git@main as localhost/a:1") || !strings.Contains(lines[0], "build_concurrency") {
		t.Errorf("wait line: %q", lines[0])
	}
	// The canceled waiter took no slot: the next one gets it once the first ends.
	release()
	r2, err := q.acquire(context.Background(), "c", newLogSink(nil, 100))
	if err != nil {
		t.Fatal(err)
	}
	r2()
}

// TestLimitsValidate: bad limits name the option and the fix.
func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		l    Limits
		want string
	}{
		{Limits{MemoryMB: 10}, "build_memory"},
		{Limits{MemoryMB: -1}, "build_memory"},
		{Limits{CPUs: 0.001}, "build_cpus"},
		{Limits{Pids: 3}, "build_pids"},
		{Limits{Timeout: time.Second}, "build_timeout"},
	} {
		err := tc.l.Validate()
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != tc.want || !strings.Contains(err.Error(), "e.g. "+tc.want) {
			t.Errorf("%+v: err = %v, want field %s with an example", tc.l, err, tc.want)
		}
	}
	if err := (Limits{}).Validate(); err != nil {
		t.Errorf("zero limits: %v", err)
	}
	if _, err := New(nil, Options{Limits: Limits{Pids: 1}}); err == nil || !strings.Contains(err.Error(), "build_pids") {
		t.Errorf("New with a bad limit: %v", err)
	}
	spec := Spec{Source: Source{URL: "https://github.com/a/b"}, Runtime: "python3.11-debian", Limits: Limits{Timeout: time.Millisecond}}
	if err := spec.Validate(); err == nil || !strings.Contains(err.Error(), "build_timeout") {
		t.Errorf("spec with a bad limit: %v", err)
	}
	got := Limits{Pids: 50}.or(defaultLimits)
	if got != (Limits{MemoryMB: 2048, CPUs: 1, Pids: 50, Timeout: 15 * time.Minute}) {
		t.Errorf("or: %+v", got)
	}
}

// TestLimitsWithin: a service's limits may lower the config's, never
// raise them; zero fields take the config's. No Podman needed.
func TestLimitsWithin(t *testing.T) {
	max := Limits{MemoryMB: 2048, CPUs: 1, Pids: 1024, Timeout: 15 * time.Minute}
	for _, ok := range []Limits{{}, {MemoryMB: 512}, {CPUs: 0.5, Pids: 64, Timeout: time.Minute}, max} {
		if err := ok.Within(max); err != nil {
			t.Errorf("%+v within %+v: %v", ok, max, err)
		}
	}
	for field, over := range map[string]Limits{
		"build_memory":  {MemoryMB: 4096},
		"build_cpus":    {CPUs: 2},
		"build_pids":    {Pids: 1 << 20},
		"build_timeout": {Timeout: time.Hour},
	} {
		err := over.Within(max)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != field || !strings.Contains(err.Error(), "raise the global option") {
			t.Errorf("%+v within %+v: %v, want an error naming %s", over, max, err, field)
		}
	}
	if got := (Limits{Pids: 64}).WithDefaults(); got != (Limits{MemoryMB: DefaultBuildMemoryMB, CPUs: DefaultBuildCPUs, Pids: 64, Timeout: DefaultBuildTimeout}) {
		t.Errorf("WithDefaults: %+v", got)
	}
}
