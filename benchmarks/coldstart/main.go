// Command coldstart measures podcell's cold start and resume against the bare
// Podman operations they are built on, in one run, interleaved sample by
// sample so machine noise hits both sides alike.
//
//	bare start    a created container with exactly the spec the scaler uses:
//	              timed Start + Inspect (for the address) + GET / every 1 ms until 200
//	cold start    a scaler.Service at zero instances with its standby container
//	              prepared: timed Acquire + GET / until 200 (the first request)
//	cold start without network sandbox
//	              the same from a scaler with NoNetworkSandbox: the instance on
//	              Podman's default network, no routes, no shaping (podcell
//	              before services had networks of their own)
//	bare unpause  a running container paused with Pause: timed Unpause + one GET / 200
//	resume        a scaler.Service whose only instance was paused after PauseAfter:
//	              timed Acquire + one GET / 200
//
// "Acquire" here is the first half of Service.Try: the time until Try runs
// the request's function with an instance (the results' labels keep the name).
//
// Within each sample the order of a pair alternates (bare first on even
// samples, podcell first on odd ones), and every timed step starts after the
// same settle pause, so neither side inherits the other's aftermath.
//
// It prints a markdown report on stdout (progress goes to stderr) and, with
// -json FILE, writes the same figures and every raw sample as JSON. It needs
// the Podman API ($PODCELL_PODMAN_URI, default unix:///run/podman/podman.sock)
// and builds the hello image (localhost/podcell-hello:test) locally.
//
// Run from the repository root (the hello image is built from ./cmd/hello):
//
//	GOFLAGS=-tags=containers_image_openpgp CGO_ENABLED=0 go run ./benchmarks/coldstart -n 25
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	mach "github.com/podcell/podcell/benchmarks/machine"
	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

const (
	coldTarget   = 1.15 // podcell cold start / bare start, median and p90
	netTarget    = 1.10 // cold start / cold start without the network sandbox
	resumeTarget = 1.5  // podcell resume / bare unpause, median and p90
	port         = 8080
)

var (
	flagN      = flag.Int("n", 25, "samples of each figure")
	flagJSON   = flag.String("json", "", "also write the results as JSON to this file")
	flagOwner  = flag.String("owner", "podcellbench", "owner label of every container the benchmark makes; all containers with it are removed at start and end")
	flagSettle = flag.Duration("settle", 200*time.Millisecond, "pause before each timed step, after its preparation")
	flagPause  = flag.Duration("pause-after", 200*time.Millisecond, "PauseAfter of the resume service")
	flagUserNS = flag.String("userns", "auto", "user namespace mode under rootful Podman, as the scaler's UserNS option: auto or host")
	flagMemory = flag.Int("memory", 256, "memory of every container in MB (CPU quota follows: MB/1769 cores)")
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "coldstart: "+format+"\n", args...)
}

func main() {
	flag.Parse()
	if *flagN < 1 {
		logf("-n must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		logf("error: %v", err)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------------------
// A runtime that records when the scaler's Start, Inspect and Unpause calls
// began and ended, so podcell's figures can be split like the baseline's. It
// adds a clock read and a short lock per call.

type call struct {
	op         string
	id         string
	begin, end time.Time
}

type timedRuntime struct {
	*scaler.Podman
	mu    sync.Mutex
	calls []call
}

func (t *timedRuntime) record(op, id string, begin time.Time) {
	end := time.Now()
	t.mu.Lock()
	t.calls = append(t.calls, call{op, id, begin, end})
	t.mu.Unlock()
}

func (t *timedRuntime) Start(ctx context.Context, id string) error {
	b := time.Now()
	err := t.Podman.Start(ctx, id)
	t.record("start", id, b)
	return err
}

func (t *timedRuntime) Inspect(ctx context.Context, id string) (scaler.ContainerInfo, error) {
	b := time.Now()
	info, err := t.Podman.Inspect(ctx, id)
	t.record("inspect", id, b)
	return info, err
}

func (t *timedRuntime) Unpause(ctx context.Context, id string) error {
	b := time.Now()
	err := t.Podman.Unpause(ctx, id)
	t.record("unpause", id, b)
	return err
}

// first returns the first call op on id that began at or after since.
func (t *timedRuntime) first(op, id string, since time.Time) (call, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.calls {
		if c.op == op && c.id == id && !c.begin.Before(since) {
			return c, true
		}
	}
	return call{}, false
}

func (t *timedRuntime) reset() {
	t.mu.Lock()
	t.calls = t.calls[:0]
	t.mu.Unlock()
}

// ---------------------------------------------------------------------------

type bench struct {
	raw   *scaler.Podman
	rt    *timedRuntime
	host  scaler.HostInfo
	owner string
	image string
	sc    *scaler.Scaler
	scOld *scaler.Scaler // NoNetworkSandbox: the "before" of the network sandbox

	// raw samples (ms) by figure and by phase
	samples map[string][]float64
}

var client = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// get does one GET / and reports whether it answered 200.
func get(ctx context.Context, addr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// getUntil200 polls GET / every 1 ms until it answers 200; it returns the
// number of tries.
func getUntil200(ctx context.Context, addr string, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for tries := 1; ; tries++ {
		if get(ctx, addr) {
			return tries, nil
		}
		if time.Now().After(deadline) {
			return tries, fmt.Errorf("GET http://%s/ did not answer 200 within %s", addr, limit)
		}
		if err := ctx.Err(); err != nil {
			return tries, err
		}
		time.Sleep(time.Millisecond)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (b *bench) add(name string, d time.Duration) {
	b.samples[name] = append(b.samples[name], ms(d))
}

func (b *bench) config(name string) scaler.ServiceConfig {
	return scaler.ServiceConfig{
		Name:         name,
		Image:        b.image,
		Port:         port,
		MemoryMB:     *flagMemory,
		MaxInstances: 1,
		PauseAfter:   -1,
		IdleTimeout:  time.Hour,
		StopGrace:    2 * time.Second,
		StartTimeout: 30 * time.Second,
		QueueTimeout: 30 * time.Second,
	}
}

// spec is the container spec the scaler gives an instance of cfg.
// The bare containers stay on Podman's default network, as before
// services had networks: the spec comes from the scaler without the sandbox.
func (b *bench) spec(cfg scaler.ServiceConfig) (scaler.ContainerSpec, error) {
	return b.scOld.ContainerSpec(cfg)
}

// cleanup removes every container carrying the owner label.
func (b *bench) cleanup(ctx context.Context) error {
	list, err := b.raw.List(ctx, scaler.LabelOwner, b.owner)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	var errs []error
	for _, c := range list {
		if c.State == scaler.StatePaused {
			b.raw.Unpause(ctx, c.ID)
		}
		if err := b.raw.Remove(ctx, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.Name, err))
		}
	}
	if len(list) > 0 {
		logf("removed %d container(s) labelled %s=%s", len(list), scaler.LabelOwner, b.owner)
	}
	nets, err := b.raw.ListNetworks(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list networks: %w", err))...)
	}
	for _, n := range nets {
		if n.Labels[scaler.LabelOwner] == b.owner {
			if err := b.raw.RemoveNetwork(ctx, n.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// waitFor polls cond every 5 ms until it holds.
func waitFor(ctx context.Context, within time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %s", within, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func (b *bench) settle(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(*flagSettle):
		return nil
	}
}

// ---------------------------------------------------------------------------
// a. bare start

func (b *bench) bareStart(ctx context.Context, record bool) error {
	cs, err := b.spec(b.config("bare-start"))
	if err != nil {
		return err
	}
	id, err := b.raw.Create(ctx, cs)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		b.raw.Remove(rctx, id)
	}()
	if err := b.settle(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	if err := b.raw.Start(ctx, id); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	t1 := time.Now()
	info, err := b.raw.Inspect(ctx, id)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	if info.Addr == "" {
		return fmt.Errorf("container %s (%s) has no address", cs.Name, info.State)
	}
	t2 := time.Now()
	if _, err := getUntil200(ctx, info.Addr, 30*time.Second); err != nil {
		return err
	}
	t3 := time.Now()
	if record {
		b.add("bare_start", t3.Sub(t0))
		b.add("bare_start.start", t1.Sub(t0))
		b.add("bare_start.inspect", t2.Sub(t1))
		b.add("bare_start.probe", t3.Sub(t2))
	}
	return nil
}

// ---------------------------------------------------------------------------
// b. podcell cold start

// standbyID returns the service's standby container if it is created and
// the service is otherwise at zero.
func standbyID(svc *scaler.Service) string {
	snap := svc.Snapshot()
	if len(snap.Instances) != 1 || snap.Instances[0].State != "standby" {
		return ""
	}
	return snap.Instances[0].ID
}

// toZero brings the cold service back to zero instances, the way it happens
// in production: it goes idle past its idle timeout and is stopped. For that
// the timeout is briefly 1 ms; the scaler meanwhile prepares the next standby.
func (b *bench) toZero(ctx context.Context, sc *scaler.Scaler, svc *scaler.Service, cfg scaler.ServiceConfig) error {
	short := cfg
	short.IdleTimeout = time.Millisecond
	if _, err := sc.Apply(short); err != nil {
		return err
	}
	err := waitFor(ctx, time.Minute, "cold service did not go back to zero with a standby", func() bool { return standbyID(svc) != "" })
	if _, aerr := sc.Apply(cfg); aerr != nil {
		return aerr
	}
	return err
}

// coldStart samples a cold start of svc (of sc) under the figure fig.
func (b *bench) coldStart(ctx context.Context, sc *scaler.Scaler, svc *scaler.Service, cfg scaler.ServiceConfig, fig string, record bool) error {
	// The standby must be created (have an id): a standby still being
	// created would make the start a create + start.
	if err := waitFor(ctx, time.Minute, "cold service has no prepared standby", func() bool { return standbyID(svc) != "" }); err != nil {
		return err
	}
	id := standbyID(svc)
	if err := b.settle(ctx); err != nil {
		return err
	}
	b.rt.reset()
	t0 := time.Now()
	var t1, t2 time.Time
	var wait scaler.Wait
	err := svc.TryWait(ctx, func(addr string, w scaler.Wait) error {
		t1, wait = time.Now(), w
		_, err := getUntil200(ctx, addr, 30*time.Second)
		t2 = time.Now()
		return err
	})
	if err != nil {
		return err
	}
	if wait.Wake != scaler.WakeStart {
		return fmt.Errorf("cold start sample was not a cold start (wake=%s)", wait.Wake)
	}
	if record {
		b.add(fig, t2.Sub(t0))
		st, ok1 := b.rt.first("start", id, t0)
		in, ok2 := b.rt.first("inspect", id, st.end)
		if ok1 && ok2 {
			b.add(fig+".dispatch", st.begin.Sub(t0))
			b.add(fig+".start", st.end.Sub(st.begin))
			b.add(fig+".inspect", in.end.Sub(in.begin))
			b.add(fig+".probe", t1.Sub(in.end))
			b.add(fig+".get", t2.Sub(t1))
		} else {
			logf("warning: the scaler did not start the standby %.12s (it made a new container)", id)
		}
	}
	return b.toZero(ctx, sc, svc, cfg)
}

// ---------------------------------------------------------------------------
// c. bare unpause

// The container is paused at the end of the previous sample (and before the
// first), like the resume service's instance, which the scaler pauses
// PauseAfter after its last request: both stay frozen for about as long.
func (b *bench) bareUnpause(ctx context.Context, id, addr string, record bool) error {
	if err := b.settle(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	if err := b.raw.Unpause(ctx, id); err != nil {
		return fmt.Errorf("unpause: %w", err)
	}
	t1 := time.Now()
	if !get(ctx, addr) {
		return fmt.Errorf("GET http://%s/ after unpause did not answer 200", addr)
	}
	t2 := time.Now()
	if record {
		b.add("bare_unpause", t2.Sub(t0))
		b.add("bare_unpause.unpause", t1.Sub(t0))
		b.add("bare_unpause.get", t2.Sub(t1))
	}
	if err := b.raw.Pause(ctx, id); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// d. podcell resume

func pausedID(svc *scaler.Service) string {
	for _, i := range svc.Snapshot().Instances {
		if i.State == "paused" {
			return i.ID
		}
	}
	return ""
}

func (b *bench) resume(ctx context.Context, svc *scaler.Service, record bool) error {
	if err := waitFor(ctx, time.Minute, "resume service was not paused", func() bool { return svc.Snapshot().Count("paused") == 1 }); err != nil {
		return err
	}
	id := pausedID(svc)
	if err := b.settle(ctx); err != nil {
		return err
	}
	b.rt.reset()
	t0 := time.Now()
	var t1, t2 time.Time
	var wait scaler.Wait
	err := svc.TryWait(ctx, func(addr string, w scaler.Wait) error {
		t1, wait = time.Now(), w
		ok := get(ctx, addr)
		t2 = time.Now()
		if !ok {
			return fmt.Errorf("GET http://%s/ after resume did not answer 200", addr)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if wait.Wake != scaler.WakeResume {
		return fmt.Errorf("resume sample was not a resume (wake=%s)", wait.Wake)
	}
	if record {
		b.add("resume", t2.Sub(t0))
		if up, found := b.rt.first("unpause", id, t0); found {
			b.add("resume.dispatch", up.begin.Sub(t0))
			b.add("resume.unpause", up.end.Sub(up.begin))
			b.add("resume.handoff", t1.Sub(up.end))
			b.add("resume.get", t2.Sub(t1))
		}
	}
	// Let it freeze again now, so the pause does not overlap the next step.
	return waitFor(ctx, time.Minute, "resume service was not paused again", func() bool { return svc.Snapshot().Count("paused") == 1 })
}

// ---------------------------------------------------------------------------

func run(ctx context.Context) error {
	raw, err := scaler.NewPodman(ctx, scalertest.URI())
	if err != nil {
		return err
	}
	host, err := raw.Host(ctx)
	if err != nil {
		return err
	}
	b := &bench{raw: raw, rt: &timedRuntime{Podman: raw}, host: host, owner: *flagOwner,
		image: scalertest.HelloImage, samples: map[string][]float64{}}
	machine := machineInfo(host)
	logf("podman %s, %s, cgroup %s, %d CPUs; building %s", host.Version, mach.RootMode(host), host.CgroupVersion, host.CPUs, b.image)
	if err := scalertest.BuildHello(ctx, raw); err != nil {
		return err
	}
	if err := b.cleanup(ctx); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if b.sc != nil {
			b.sc.Close(cctx)
		}
		if b.scOld != nil {
			b.scOld.Close(cctx)
		}
		if err := b.cleanup(cctx); err != nil {
			logf("cleanup: %v", err)
		}
	}()

	// StandbyIdle -1: the cold service has its standby before its first
	// use (by default a service keeps one only once used), which the
	// first sample's wait needs; every later sample follows a use anyway.
	b.sc, err = scaler.New(ctx, b.rt, scaler.Options{Owner: b.owner, UserNS: *flagUserNS, StandbyIdle: -1})
	if err != nil {
		return err
	}
	b.scOld, err = scaler.New(ctx, b.rt, scaler.Options{Owner: b.owner, UserNS: *flagUserNS, NoNetworkSandbox: true, StandbyIdle: -1})
	if err != nil {
		return err
	}
	coldCfg := b.config("cold")
	cold, err := b.sc.Apply(coldCfg)
	if err != nil {
		return err
	}
	oldCfg := b.config("cold-nosandbox")
	coldOld, err := b.scOld.Apply(oldCfg)
	if err != nil {
		return err
	}
	resCfg := b.config("resume")
	resCfg.PauseAfter = *flagPause
	resSvc, err := b.sc.Apply(resCfg)
	if err != nil {
		return err
	}

	// The bare unpause container runs all along, like the resume service's instance.
	pcs, err := b.spec(b.config("bare-pause"))
	if err != nil {
		return err
	}
	pid, err := raw.Create(ctx, pcs)
	if err != nil {
		return err
	}
	if err := raw.Start(ctx, pid); err != nil {
		return err
	}
	pinfo, err := raw.Inspect(ctx, pid)
	if err != nil {
		return err
	}
	if _, err := getUntil200(ctx, pinfo.Addr, 30*time.Second); err != nil {
		return err
	}
	if err := raw.Pause(ctx, pid); err != nil {
		return err
	}
	// The resume service's instance: one cold start, then it pauses.
	if err := resSvc.Try(ctx, func(addr string) error { get(ctx, addr); return nil }); err != nil {
		return fmt.Errorf("first request to the resume service: %w", err)
	}

	steps := []struct {
		name string
		fn   func(record bool) error
	}{
		{"bare start", func(r bool) error { return b.bareStart(ctx, r) }},
		{"cold start", func(r bool) error { return b.coldStart(ctx, b.sc, cold, coldCfg, "cold_start", r) }},
		{"bare unpause", func(r bool) error { return b.bareUnpause(ctx, pid, pinfo.Addr, r) }},
		{"resume", func(r bool) error { return b.resume(ctx, resSvc, r) }},
		{"cold start without network sandbox", func(r bool) error {
			return b.coldStart(ctx, b.scOld, coldOld, oldCfg, "cold_start_nosandbox", r)
		}},
	}
	// One untimed round warms caches (image layers, the API service, Go's
	// HTTP client) for both sides.
	logf("warm-up round")
	for _, s := range steps {
		if err := s.fn(false); err != nil {
			return fmt.Errorf("warm-up %s: %w", s.name, err)
		}
	}
	machine.LoadBefore = mach.Loadavg()
	began := time.Now()
	for i := 0; i < *flagN; i++ {
		order := []int{0, 1, 4, 2, 3}
		if i%2 == 1 {
			order = []int{4, 1, 0, 3, 2}
		}
		for _, k := range order {
			if err := steps[k].fn(true); err != nil {
				return fmt.Errorf("sample %d, %s: %w", i+1, steps[k].name, err)
			}
		}
		logf("sample %d/%d: bare start %.1f ms, cold start %.1f ms (%.1f ms without network sandbox), bare unpause %.1f ms, resume %.1f ms", i+1, *flagN,
			last(b.samples["bare_start"]), last(b.samples["cold_start"]), last(b.samples["cold_start_nosandbox"]), last(b.samples["bare_unpause"]), last(b.samples["resume"]))
	}
	machine.LoadAfter = mach.Loadavg()
	machine.Duration = time.Since(began).Round(time.Second).String()

	rep := report(b, machine)
	fmt.Print(rep.markdown())
	if *flagJSON != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*flagJSON, append(data, '\n'), 0o644); err != nil {
			return err
		}
		logf("wrote %s", *flagJSON)
	}
	return nil
}

func last(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return xs[len(xs)-1]
}

// ---------------------------------------------------------------------------
// Machine facts and the report.

type Machine struct {
	Date          string `json:"date"`
	OS            string `json:"os"`
	Kernel        string `json:"kernel"`
	CPUs          int    `json:"nproc"`
	Podman        string `json:"podman"`
	OCIRuntime    string `json:"oci_runtime"`
	CgroupVersion string `json:"cgroup_version"`
	Rootless      bool   `json:"rootless"`
	UserNS        string `json:"userns"`
	Go            string `json:"go"`
	LoadBefore    string `json:"loadavg_before"`
	LoadAfter     string `json:"loadavg_after"`
	Duration      string `json:"duration"`
}

func machineInfo(h scaler.HostInfo) Machine {
	m := Machine{
		Date:          time.Now().UTC().Format(time.RFC3339),
		OS:            mach.OSName(),
		Kernel:        mach.ReadTrim("/proc/sys/kernel/osrelease"),
		CPUs:          runtime.NumCPU(),
		Podman:        h.Version,
		OCIRuntime:    h.OCIRuntime,
		CgroupVersion: h.CgroupVersion,
		Rootless:      h.Rootless,
		UserNS:        *flagUserNS,
		Go:            runtime.Version(),
	}
	if h.Rootless {
		m.UserNS = "rootless default"
	}
	return m
}

type Stat struct {
	Name   string  `json:"name"`
	N      int     `json:"n"`
	Median float64 `json:"median_ms"`
	P90    float64 `json:"p90_ms"`
	Max    float64 `json:"max_ms"`
	Min    float64 `json:"min_ms"`
}

type Ratio struct {
	Name   string  `json:"name"`
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	Target float64 `json:"target"`
	Met    bool    `json:"met"`
}

type Report struct {
	Machine   Machine              `json:"machine"`
	N         int                  `json:"n"`
	MemoryMB  int                  `json:"memory_mb"`
	CPUCores  float64              `json:"cpu_cores"`
	Settle    string               `json:"settle"`
	Figures   []Stat               `json:"figures"`
	Ratios    []Ratio              `json:"ratios"`
	Breakdown []Stat               `json:"breakdown"`
	Samples   map[string][]float64 `json:"samples_ms"`
}

func stat(name string, xs []float64) Stat {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	st := Stat{Name: name, N: len(s), Median: mach.Percentile(s, 50), P90: mach.Percentile(s, 90)}
	if len(s) > 0 {
		st.Min, st.Max = s[0], s[len(s)-1]
	}
	return st
}

func ratio(name string, podcell, bare Stat, target float64) Ratio {
	r := Ratio{Name: name, Median: podcell.Median / bare.Median, P90: podcell.P90 / bare.P90, Target: target}
	r.Met = r.Median <= target && r.P90 <= target
	return r
}

func report(b *bench, m Machine) Report {
	r := Report{Machine: m, N: *flagN, MemoryMB: *flagMemory, Settle: flagSettle.String(), Samples: b.samples}
	if lim, err := scaler.LimitsFor(*flagMemory, 1, 16); err == nil {
		r.CPUCores = lim.Cores()
	}
	names := []string{"bare_start", "cold_start", "cold_start_nosandbox", "bare_unpause", "resume"}
	st := map[string]Stat{}
	for _, n := range names {
		st[n] = stat(n, b.samples[n])
		r.Figures = append(r.Figures, st[n])
	}
	r.Ratios = []Ratio{
		ratio("cold start / bare start", st["cold_start"], st["bare_start"], coldTarget),
		ratio("resume / bare unpause", st["resume"], st["bare_unpause"], resumeTarget),
		ratio("cold start / cold start without network sandbox", st["cold_start"], st["cold_start_nosandbox"], netTarget),
	}
	for _, n := range []string{
		"bare_start.start", "bare_start.inspect", "bare_start.probe",
		"cold_start.dispatch", "cold_start.start", "cold_start.inspect", "cold_start.probe", "cold_start.get",
		"cold_start_nosandbox.start", "cold_start_nosandbox.probe",
		"bare_unpause.unpause", "bare_unpause.get",
		"resume.dispatch", "resume.unpause", "resume.handoff", "resume.get",
	} {
		if xs := b.samples[n]; len(xs) > 0 {
			r.Breakdown = append(r.Breakdown, stat(n, xs))
		}
	}
	return r
}

var figureText = map[string]string{
	"bare_start":           "bare start: Start + Inspect + GET / every 1 ms until 200",
	"cold_start":           "podcell cold start: Acquire (standby ready) + GET / until 200",
	"cold_start_nosandbox": "podcell cold start without network sandbox (default network, no routes, no shaping)",
	"bare_unpause":         "bare unpause: Unpause + one GET / 200",
	"resume":               "podcell resume: Acquire (instance paused) + one GET / 200",
}

var breakdownText = map[string]string{
	"bare_start.start":           "bare start: Start call",
	"bare_start.inspect":         "bare start: Inspect call",
	"bare_start.probe":           "bare start: GET / polled until 200",
	"cold_start.dispatch":        "cold start: Acquire until the scaler calls Start",
	"cold_start.start":           "cold start: Start call",
	"cold_start.inspect":         "cold start: Inspect call",
	"cold_start.probe":           "cold start: network sandbox + readiness probe until Acquire returns",
	"cold_start_nosandbox.start": "cold start without sandbox: Start call",
	"cold_start_nosandbox.probe": "cold start without sandbox: readiness probe until Acquire returns",
	"cold_start.get":             "cold start: first GET / after Acquire",
	"bare_unpause.unpause":       "bare unpause: Unpause call",
	"bare_unpause.get":           "bare unpause: GET /",
	"resume.dispatch":            "resume: Acquire until the scaler calls Unpause",
	"resume.unpause":             "resume: Unpause call",
	"resume.handoff":             "resume: Unpause return until Acquire returns",
	"resume.get":                 "resume: GET /",
}

func (r Report) markdown() string {
	var s strings.Builder
	m := r.Machine
	fmt.Fprintf(&s, "## Cold start and resume, %s\n\n", m.Date)
	mode := "rootful"
	if m.Rootless {
		mode = "rootless"
	}
	fmt.Fprintf(&s, "Machine: %s, kernel %s, %d CPUs, podman %s %s (userns=%s, OCI runtime %s), cgroup %s, %s.  \n",
		m.OS, m.Kernel, m.CPUs, m.Podman, mode, m.UserNS, m.OCIRuntime, m.CgroupVersion, m.Go)
	fmt.Fprintf(&s, "Containers: %s, %d MB, CPU quota %.3f core.  \n", scalertest.HelloImage, r.MemoryMB, r.CPUCores)
	fmt.Fprintf(&s, "%d samples of each figure, interleaved; %s settle before each timed step; load average %s before, %s after; %s.\n\n",
		r.N, r.Settle, m.LoadBefore, m.LoadAfter, m.Duration)
	s.WriteString("| figure | median | p90 | max |\n|---|---:|---:|---:|\n")
	for _, f := range r.Figures {
		fmt.Fprintf(&s, "| %s | %.1f ms | %.1f ms | %.1f ms |\n", figureText[f.Name], f.Median, f.P90, f.Max)
	}
	s.WriteString("\n| ratio | median | p90 | target | met |\n|---|---:|---:|---:|---|\n")
	for _, q := range r.Ratios {
		met := "yes"
		if !q.Met {
			met = "no"
		}
		fmt.Fprintf(&s, "| %s | %.2fx | %.2fx | <= %.2fx | %s |\n", q.Name, q.Median, q.P90, q.Target, met)
	}
	s.WriteString("\nWhere the time goes (each part's own distribution; parts' medians need not add up to the total's):\n\n")
	s.WriteString("| part | median | p90 | max |\n|---|---:|---:|---:|\n")
	for _, f := range r.Breakdown {
		fmt.Fprintf(&s, "| %s | %.2f ms | %.2f ms | %.2f ms |\n", breakdownText[f.Name], f.Median, f.P90, f.Max)
	}
	return s.String()
}
