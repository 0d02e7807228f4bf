// Command gateway measures podcell's HTTP gateway (the podcell Caddy handler)
// against what it is built on, in one run of one Caddy process:
//
//	warm        GET / through `podcell bench` (site A) against a plain
//	            `reverse_proxy` to the same running container (site B):
//	            open loop at a fixed rate, rounds alternating A and B, and a
//	            closed loop of N workers, alternating too
//	cold start  the first GET / through `podcell cold` (site C) at zero
//	            instances with its standby container prepared, against a bare
//	            Podman start of a container with the scaler's exact spec
//	            (Start + Inspect + GET / every 1 ms until 200), interleaved
//	burst       500 concurrent GET / through `podcell burst` (site D) at zero
//	            (max_instances 4, concurrency 20, queue_size 1000)
//
// It builds the Caddy binary from ./cmd/caddy (or takes -caddy PATH), runs it
// with a Caddyfile of four sites on loopback ports, prints a markdown report
// on stdout (progress goes to stderr) and, with -json FILE, writes the same
// figures and the raw samples as JSON. It needs the Podman API
// ($PODCELL_PODMAN_URI, default unix:///run/podman/podman.sock) and builds the
// hello image (localhost/podcell-hello:test) locally.
//
// Run from the repository root:
//
//	GOFLAGS=-tags=containers_image_openpgp CGO_ENABLED=0 go run ./benchmarks/gateway -n 25
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
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/podcell/podcell/benchmarks/harness"
	mach "github.com/podcell/podcell/benchmarks/machine"
	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

const (
	tputTarget  = 0.95 // podcell / reverse_proxy throughput, at least
	p99Target   = 0.5  // podcell p99 - reverse_proxy p99, ms, at most
	coldTarget  = 1.15 // gateway cold start / bare start, median and p90, at most
	appPort     = 8080
	coldMemory  = 256 // MB of the cold and burst services (the default)
	coldIdle    = time.Second
	burstIdle   = 2 * time.Second
	burstMaxIns = 4
	burstConc   = 20
	burstQueue  = 1000
)

var (
	flagCaddy        = flag.String("caddy", "", "Caddy binary to run (default: build ./cmd/caddy into a temporary directory)")
	flagJSON         = flag.String("json", "", "also write the results as JSON to this file")
	flagOwner        = flag.String("owner", "podcellbench-gw", "podcell owner label of every container the benchmark makes; all containers with it are removed at start and end")
	flagRate         = flag.Float64("rate", 1000, "open-loop request rate (requests/s) of the warm test")
	flagRound        = flag.Duration("round", 4*time.Second, "length of one open-loop round of one side")
	flagRounds       = flag.Int("rounds", 10, "open-loop rounds of each side (A and B alternate: AB BA AB...)")
	flagWarmup       = flag.Duration("warmup", 2*time.Second, "untimed open-loop warm-up of each side before the rounds")
	flagWorkers      = flag.Int("workers", 32, "concurrent workers of the closed-loop test")
	flagClosed       = flag.Duration("closed", 2*time.Second, "length of one closed-loop round of one side")
	flagClosedRounds = flag.Int("closed-rounds", 5, "closed-loop rounds of each side (alternating: AB BA AB...)")
	flagMemory       = flag.Int("memory", 1769, "memory (MB) of the warm service's container; CPU follows (MB/1769 cores), so the default gives the app one whole core")
	flagN            = flag.Int("n", 25, "cold-start samples of each side")
	flagSettle       = flag.Duration("settle", 200*time.Millisecond, "pause before each timed cold-start step, after its preparation")
	flagBursts       = flag.Int("bursts", 3, "bursts at zero")
	flagBurstSize    = flag.Int("burst", 500, "concurrent requests of one burst")
	flagBurstCompare = flag.Bool("burst-compare", false, "also burst a service like D but with max_instances 1 (site E), alternating with D, to see what the extra instances cost")
	flagProfile      = flag.String("profile", "", "directory: save a CPU profile of Caddy (admin /debug/pprof/profile) during each closed-loop round there")
	flagSkip         = flag.String("skip", "", "comma-separated parts to skip: warm, closed, cold, burst")
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gateway: "+format+"\n", args...)
}

func main() {
	flag.Parse()
	if *flagN < 1 || *flagRounds < 1 || *flagClosedRounds < 1 || *flagBursts < 1 || *flagRate <= 0 || *flagWorkers < 1 {
		logf("-n, -rounds, -closed-rounds, -bursts, -workers and -rate must be positive")
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		logf("received %v: stopping", sig)
		signal.Stop(sigs)
		cancel()
	}()
	if err := run(ctx); err != nil {
		logf("error: %v", err)
		os.Exit(1)
	}
}

func skip(part string) bool {
	for _, p := range strings.Split(*flagSkip, ",") {
		if strings.TrimSpace(p) == part {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// Caddy

// ---------------------------------------------------------------------------

type bench struct {
	raw   *scaler.Podman
	host  scaler.HostInfo
	owner string
	image string
	caddy *harness.Caddy

	admin                      string // Caddy's admin API, host:port
	siteA, siteB, siteC, siteD string // host:port
	siteE                      string // -burst-compare
	benchAddr                  string // the bench service's container, as site B proxies to it
	benchID                    string

	sc    *scaler.Scaler // only to build specs; it runs no service
	loads []PhaseLoad
}

type PhaseLoad struct {
	Phase string `json:"phase"`
	Load  string `json:"loadavg"`
	At    string `json:"at"`
}

func (b *bench) noteLoad(phase string) {
	b.loads = append(b.loads, PhaseLoad{Phase: phase, Load: mach.Loadavg(), At: time.Now().UTC().Format(time.RFC3339)})
	logf("%s: load average %s", phase, mach.Loadavg())
}

func (b *bench) caddyfile(withB bool) string {
	var s strings.Builder
	fmt.Fprintf(&s, `{
	admin %s
	auto_https off
	podcell {
		owner %s
	}
}

# A: the warm service; one instance, always up, podcell's admission limit
# (concurrency) above any load this benchmark makes, so that A and B reach
# the same single container.
http://%s {
	podcell bench {
		image %s
		memory %dMB
		min_instances 1
		max_instances 1
		concurrency 1000
		pause_after off
		idle_timeout 24h
	}
}
`, b.admin, b.owner, b.siteA, b.image, *flagMemory)
	if withB {
		fmt.Fprintf(&s, `
# B: the baseline, a plain reverse_proxy to A's container.
http://%s {
	reverse_proxy %s
}
`, b.siteB, b.benchAddr)
	}
	fmt.Fprintf(&s, `
# C: cold starts. It goes back to zero by idling past idle_timeout.
http://%s {
	podcell cold {
		image %s
		memory %dMB
		max_instances 1
		pause_after off
		idle_timeout %s
	}
}

# D: bursts at zero.
http://%s {
	podcell burst {
		image %s
		memory %dMB
		max_instances %d
		concurrency %d
		queue_size %d
		pause_after off
		idle_timeout %s
	}
}
`, b.siteC, b.image, coldMemory, coldIdle, b.siteD, b.image, coldMemory, burstMaxIns, burstConc, burstQueue, burstIdle)
	if *flagBurstCompare {
		fmt.Fprintf(&s, `
# E: as D, but one instance at most (-burst-compare).
http://%s {
	podcell burst1 {
		image %s
		memory %dMB
		max_instances 1
		concurrency %d
		queue_size %d
		pause_after off
		idle_timeout %s
	}
}
`, b.siteE, b.image, coldMemory, burstConc, burstQueue, burstIdle)
	}
	return s.String()
}

// apiTimeout bounds each Podman call of the benchmark itself, so that a
// wedged Podman service fails the run instead of hanging it.
const apiTimeout = time.Minute

func api(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, apiTimeout)
}

// containers lists the containers of one service of this benchmark's owner.
func (b *bench) containers(ctx context.Context, service string) ([]scaler.ContainerInfo, error) {
	actx, cancel := api(ctx)
	defer cancel()
	list, err := b.raw.List(actx, scaler.LabelOwner, b.owner)
	if err != nil {
		return nil, err
	}
	var out []scaler.ContainerInfo
	for _, c := range list {
		if c.Labels[scaler.LabelService] == service {
			out = append(out, c)
		}
	}
	return out, nil
}

// atZero reports the id of the service's only container if it is a created or initialized
// (standby) one: the service runs no instance and its standby is ready.
func (b *bench) atZero(ctx context.Context, service string) (string, error) {
	list, err := b.containers(ctx, service)
	if err != nil {
		return "", err
	}
	if len(list) == 1 && (list[0].State == scaler.StateCreated || list[0].State == scaler.StateInitialized) {
		return list[0].ID, nil
	}
	return "", nil
}

// waitZero waits until `podman ps -a` shows the service with zero running
// containers and exactly one created or initialized one.
func (b *bench) waitZero(ctx context.Context, service string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for {
		id, err := b.atZero(ctx, service)
		if err != nil {
			return "", err
		}
		if id != "" {
			return id, nil
		}
		if err := b.caddy.Alive(); err != nil {
			return "", err
		}
		if time.Now().After(deadline) {
			list, _ := b.containers(ctx, service)
			var states []string
			for _, c := range list {
				states = append(states, c.Name+":"+c.State)
			}
			return "", fmt.Errorf("after %s, service %s is not at zero with a standby: %v", within, service, states)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cleanup removes every container carrying the owner label.
func (b *bench) cleanup(ctx context.Context) error {
	actx, cancel := api(ctx)
	list, err := b.raw.List(actx, scaler.LabelOwner, b.owner)
	cancel()
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	var errs []error
	for _, c := range list {
		actx, cancel := api(ctx)
		if c.State == scaler.StatePaused {
			b.raw.Unpause(actx, c.ID)
		}
		err := b.raw.Remove(actx, c.ID)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.Name, err))
		}
	}
	if len(list) > 0 {
		logf("removed %d container(s) labelled %s=%s", len(list), scaler.LabelOwner, b.owner)
	}
	return errors.Join(errs...)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ---------------------------------------------------------------------------
// HTTP

func newClient(timeout time.Duration, keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 4096,
			IdleConnTimeout:     2 * time.Minute,
			DisableCompression:  true,
			DisableKeepAlives:   !keepAlive,
		},
	}
}

type answer struct {
	code     int
	instance string
	cold     string // Podcell-Cold-Start
	err      error
}

func get(ctx context.Context, c *http.Client, url string) answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return answer{err: err}
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return answer{code: resp.StatusCode, instance: resp.Header.Get("X-Instance"), cold: resp.Header.Get("Podcell-Cold-Start")}
}

// ---------------------------------------------------------------------------
// 1. Warm: open loop at a fixed rate.

// openResult is one open-loop round of one side.
type openResult struct {
	lat      []float64 // ms from the scheduled send time to the end of the response, successful requests
	lag      []float64 // ms from the scheduled send time to the actual send, all requests
	sent     int
	ok       int
	errs     int
	elapsed  time.Duration // first scheduled send to the last response
	firstErr string
}

// openLoop sends GET url at rate requests/s for dur on a precomputed
// schedule, each request in its own goroutine, whatever the responses do:
// a slow response does not delay the next send. Latency is measured from
// the scheduled send time, so a stall (of the server or of this harness)
// counts against every request it delays (no coordinated omission).
func openLoop(ctx context.Context, c *http.Client, url string, rate float64, dur time.Duration) openResult {
	n := int(rate * dur.Seconds())
	interval := float64(time.Second) / rate
	lat := make([]float64, n)
	lag := make([]float64, n)
	okv := make([]bool, n)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	var lastDone atomic.Int64 // ns after start (monotonic)
	start := time.Now().Add(5 * time.Millisecond)
	sent := 0
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(float64(i) * interval))
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		wg.Add(1)
		go func(i int, at time.Time) {
			defer wg.Done()
			lag[i] = ms(time.Since(at))
			a := get(ctx, c, url)
			done := time.Now()
			lat[i] = ms(done.Sub(at))
			okv[i] = a.err == nil && a.code == http.StatusOK
			if !okv[i] {
				msg := fmt.Sprintf("code %d err %v", a.code, a.err)
				firstErr.CompareAndSwap(nil, msg)
			}
			since := int64(done.Sub(start))
			for {
				old := lastDone.Load()
				if since <= old || lastDone.CompareAndSwap(old, since) {
					break
				}
			}
		}(i, at)
	}
	wg.Wait()
	r := openResult{sent: sent, elapsed: time.Duration(lastDone.Load())}
	for i := 0; i < sent; i++ {
		r.lag = append(r.lag, lag[i])
		if okv[i] {
			r.ok++
			r.lat = append(r.lat, lat[i])
		} else {
			r.errs++
		}
	}
	if v := firstErr.Load(); v != nil {
		r.firstErr = v.(string)
	}
	return r
}

// Summary describes one side's latencies and throughput.
type Summary struct {
	Side       string  `json:"side"`
	Round      int     `json:"round,omitempty"` // 0: all rounds pooled
	Sent       int     `json:"sent"`
	OK         int     `json:"ok"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput_rps"` // successful responses per second
	P50        float64 `json:"p50_ms"`
	P90        float64 `json:"p90_ms"`
	P99        float64 `json:"p99_ms"`
	P999       float64 `json:"p999_ms"`
	Max        float64 `json:"max_ms"`
	LagP50     float64 `json:"send_lag_p50_ms,omitempty"`
	LagP99     float64 `json:"send_lag_p99_ms,omitempty"`
	Load       string  `json:"loadavg_after,omitempty"`
}

func summarize(side string, round int, sent, ok, errs int, elapsed time.Duration, lat, lag []float64) Summary {
	s := append([]float64(nil), lat...)
	sort.Float64s(s)
	sm := Summary{Side: side, Round: round, Sent: sent, OK: ok, Errors: errs, Seconds: elapsed.Seconds(),
		P50: mach.Percentile(s, 50), P90: mach.Percentile(s, 90), P99: mach.Percentile(s, 99), P999: mach.Percentile(s, 99.9)}
	if len(s) > 0 {
		sm.Max = s[len(s)-1]
	}
	if elapsed > 0 {
		sm.Throughput = float64(ok) / elapsed.Seconds()
	}
	if len(lag) > 0 {
		l := append([]float64(nil), lag...)
		sort.Float64s(l)
		sm.LagP50, sm.LagP99 = mach.Percentile(l, 50), mach.Percentile(l, 99)
	}
	return sm
}

type sideSpec struct {
	name string // "podcell" or "reverse_proxy"
	url  string
	c    *http.Client
}

// WarmResult is the open-loop test.
type WarmResult struct {
	Rate       float64   `json:"rate_rps"`
	Round      string    `json:"round"`
	Rounds     int       `json:"rounds"`
	Order      []string  `json:"order"`
	PerRound   []Summary `json:"per_round"`
	Podcell    Summary   `json:"podcell"`
	Baseline   Summary   `json:"reverse_proxy"`
	TputRatio  float64   `json:"throughput_ratio"`
	P99DiffMS  float64   `json:"p99_diff_ms"`
	P50DiffMS  float64   `json:"p50_diff_ms"`
	TputMet    bool      `json:"throughput_target_met"`
	P99Met     bool      `json:"p99_target_met"`
	RoundDiffs []float64 `json:"per_round_pair_p99_diff_ms"`
	// MedianDiff is the median over rounds of (A p99 - B p99): less
	// sensitive than the pooled p99s to load that hit one side's round.
	MedianDiff float64 `json:"median_round_p99_diff_ms"`
}

// order returns side indexes for rounds r: ABBA ABBA...
func order(rounds int) []int {
	var o []int
	for r := 0; r < rounds; r++ {
		if r%2 == 0 {
			o = append(o, 0, 1)
		} else {
			o = append(o, 1, 0)
		}
	}
	return o
}

func (b *bench) warm(ctx context.Context, sides []sideSpec) (WarmResult, error) {
	res := WarmResult{Rate: *flagRate, Round: flagRound.String(), Rounds: *flagRounds}
	for _, s := range sides {
		logf("warm: warm-up %s for %s at %.0f rps", s.name, *flagWarmup, *flagRate)
		r := openLoop(ctx, s.c, s.url, *flagRate, *flagWarmup)
		if r.errs > 0 {
			return res, fmt.Errorf("warm-up of %s: %d errors (first: %s)", s.name, r.errs, r.firstErr)
		}
	}
	pooled := make([]openResult, 2)
	var elapsed [2]time.Duration
	roundP99 := map[[2]int]float64{} // (round, side) -> p99
	for k, si := range order(*flagRounds) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := b.caddy.Alive(); err != nil {
			return res, err
		}
		round := k/2 + 1
		s := sides[si]
		r := openLoop(ctx, s.c, s.url, *flagRate, *flagRound)
		sm := summarize(s.name, round, r.sent, r.ok, r.errs, r.elapsed, r.lat, r.lag)
		sm.FirstError = r.firstErr
		sm.Load = mach.Loadavg()
		res.PerRound = append(res.PerRound, sm)
		res.Order = append(res.Order, s.name)
		roundP99[[2]int{round, si}] = sm.P99
		logf("warm round %d %s: %d/%d ok, %.1f rps, p50 %.3f p99 %.3f max %.1f ms, send lag p99 %.3f ms, load %s",
			round, s.name, r.ok, r.sent, sm.Throughput, sm.P50, sm.P99, sm.Max, sm.LagP99, sm.Load)
		p := &pooled[si]
		p.sent += r.sent
		p.ok += r.ok
		p.errs += r.errs
		p.lat = append(p.lat, r.lat...)
		p.lag = append(p.lag, r.lag...)
		if p.firstErr == "" {
			p.firstErr = r.firstErr
		}
		elapsed[si] += r.elapsed
	}
	res.Podcell = summarize(sides[0].name, 0, pooled[0].sent, pooled[0].ok, pooled[0].errs, elapsed[0], pooled[0].lat, pooled[0].lag)
	res.Podcell.FirstError = pooled[0].firstErr
	res.Baseline = summarize(sides[1].name, 0, pooled[1].sent, pooled[1].ok, pooled[1].errs, elapsed[1], pooled[1].lat, pooled[1].lag)
	res.Baseline.FirstError = pooled[1].firstErr
	res.TputRatio = res.Podcell.Throughput / res.Baseline.Throughput
	res.P99DiffMS = res.Podcell.P99 - res.Baseline.P99
	res.P50DiffMS = res.Podcell.P50 - res.Baseline.P50
	res.TputMet = res.TputRatio >= tputTarget
	res.P99Met = res.P99DiffMS <= p99Target
	for r := 1; r <= *flagRounds; r++ {
		res.RoundDiffs = append(res.RoundDiffs, roundP99[[2]int{r, 0}]-roundP99[[2]int{r, 1}])
	}
	res.MedianDiff = median(res.RoundDiffs)
	return res, nil
}

// ---------------------------------------------------------------------------
// 1b. Closed loop: N workers, each sends its next request when the last
// one answered.

type ClosedResult struct {
	Workers  int       `json:"workers"`
	Round    string    `json:"round"`
	Rounds   int       `json:"rounds"`
	PerRound []Summary `json:"per_round"`
	Podcell  Summary   `json:"podcell"`
	Baseline Summary   `json:"reverse_proxy"`
	Ratio    float64   `json:"throughput_ratio"`
	// RoundRatios are A/B requests/s of each round's pair; MedianRatio
	// their median.
	RoundRatios []float64 `json:"per_round_pair_ratio"`
	MedianRatio float64   `json:"median_round_ratio"`
}

func closedLoop(ctx context.Context, c *http.Client, url string, workers int, dur time.Duration) openResult {
	var mu sync.Mutex
	var res openResult
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []float64
			ok, errs := 0, 0
			first := ""
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				a := get(ctx, c, url)
				if a.err == nil && a.code == http.StatusOK {
					ok++
					lat = append(lat, ms(time.Since(t0)))
				} else {
					errs++
					if first == "" {
						first = fmt.Sprintf("code %d err %v", a.code, a.err)
					}
				}
			}
			mu.Lock()
			res.ok += ok
			res.errs += errs
			res.sent += ok + errs
			res.lat = append(res.lat, lat...)
			if res.firstErr == "" {
				res.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// profile starts a CPU profile of Caddy for d if -profile is set; the
// returned function waits for it and saves it.
func (b *bench) profile(name string, d time.Duration) func() error {
	if *flagProfile == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.admin, max(1, int(d.Seconds())))
		resp, err := http.Get(url)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %d %s", url, resp.StatusCode, data)
		}
		if err == nil {
			err = os.MkdirAll(*flagProfile, 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(*flagProfile, name), data, 0o644)
		}
		done <- err
	}()
	return func() error { return <-done }
}

// pairs returns each round's (podcell, reverse_proxy) summaries, by round.
func pairs(per []Summary) [][2]Summary {
	var out [][2]Summary
	for _, x := range per {
		for len(out) < x.Round {
			out = append(out, [2]Summary{})
		}
		i := 1
		if x.Side == "podcell" {
			i = 0
		}
		out[x.Round-1][i] = x
	}
	return out
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return mach.Percentile(s, 50)
}

func (b *bench) closed(ctx context.Context, sides []sideSpec) (ClosedResult, error) {
	res := ClosedResult{Workers: *flagWorkers, Round: flagClosed.String(), Rounds: *flagClosedRounds}
	for _, s := range sides {
		closedLoop(ctx, s.c, s.url, *flagWorkers, time.Second) // warm connections
	}
	pooled := make([]openResult, 2)
	var elapsed [2]time.Duration
	for k, si := range order(*flagClosedRounds) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := b.caddy.Alive(); err != nil {
			return res, err
		}
		s := sides[si]
		prof := b.profile(fmt.Sprintf("closed-%d-%s.pprof", k/2+1, s.name), *flagClosed-time.Second)
		r := closedLoop(ctx, s.c, s.url, *flagWorkers, *flagClosed)
		if err := prof(); err != nil {
			logf("profile: %v", err)
		}
		sm := summarize(s.name, k/2+1, r.sent, r.ok, r.errs, r.elapsed, r.lat, nil)
		sm.FirstError = r.firstErr
		sm.Load = mach.Loadavg()
		res.PerRound = append(res.PerRound, sm)
		logf("closed round %d %s: %d ok, %d errors, %.0f rps, p50 %.3f p99 %.3f ms, load %s",
			k/2+1, s.name, r.ok, r.errs, sm.Throughput, sm.P50, sm.P99, sm.Load)
		p := &pooled[si]
		p.sent += r.sent
		p.ok += r.ok
		p.errs += r.errs
		p.lat = append(p.lat, r.lat...)
		if p.firstErr == "" {
			p.firstErr = r.firstErr
		}
		elapsed[si] += r.elapsed
	}
	res.Podcell = summarize(sides[0].name, 0, pooled[0].sent, pooled[0].ok, pooled[0].errs, elapsed[0], pooled[0].lat, nil)
	res.Podcell.FirstError = pooled[0].firstErr
	res.Baseline = summarize(sides[1].name, 0, pooled[1].sent, pooled[1].ok, pooled[1].errs, elapsed[1], pooled[1].lat, nil)
	res.Baseline.FirstError = pooled[1].firstErr
	res.Ratio = res.Podcell.Throughput / res.Baseline.Throughput
	for _, p := range pairs(res.PerRound) {
		res.RoundRatios = append(res.RoundRatios, p[0].Throughput/p[1].Throughput)
	}
	res.MedianRatio = median(res.RoundRatios)
	return res, nil
}

// ---------------------------------------------------------------------------
// 2. Cold start: through the gateway vs a bare Podman start.

// coldConfig is site C's service as the handler hands it to the scaler.
func coldConfig(image string) scaler.ServiceConfig {
	return scaler.ServiceConfig{
		Name:         "cold",
		Image:        image,
		Port:         appPort,
		MemoryMB:     coldMemory,
		MaxInstances: 1,
		PauseAfter:   -1,
		IdleTimeout:  coldIdle,
	}.WithDefaults()
}

// spec is the container spec podcell's scaler gives an instance of cfg, but
// labelled as service, a name the Caddy config does not have, so podcell's
// scaler ignores these containers' events.
func (b *bench) spec(cfg scaler.ServiceConfig, service string) (scaler.ContainerSpec, error) {
	cfg.Name = service
	return b.sc.ContainerSpec(cfg)
}

var pollClient = newClient(2*time.Second, false)

// getUntil200 polls GET / every 1 ms until it answers 200.
func getUntil200(ctx context.Context, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if a := get(ctx, pollClient, "http://"+addr+"/"); a.err == nil && a.code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET http://%s/ did not answer 200 within %s", addr, limit)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

type coldBench struct {
	samples map[string][]float64
}

func (cb *coldBench) add(name string, v float64) { cb.samples[name] = append(cb.samples[name], v) }

// bareStart: a created container with the cold service's exact spec; timed
// Start + Inspect + GET / every 1 ms until 200.
func (b *bench) bareStart(ctx context.Context, cb *coldBench, record bool) error {
	cs, err := b.spec(coldConfig(b.image), "bare-start")
	if err != nil {
		return err
	}
	// A bare Podman start runs on Podman's default network: the spec names
	// the service's own network, which only the scaler makes (at its first
	// create), and this container is not the scaler's.
	cs.Network = ""
	actx, cancel := api(ctx)
	defer cancel()
	id, err := b.raw.Create(actx, cs)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		b.raw.Remove(rctx, id)
	}()
	if err := sleepCtx(ctx, *flagSettle); err != nil {
		return err
	}
	t0 := time.Now()
	if err := b.raw.Start(actx, id); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	t1 := time.Now()
	info, err := b.raw.Inspect(actx, id)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	if info.Addr == "" {
		return fmt.Errorf("container %s (%s) has no address", cs.Name, info.State)
	}
	t2 := time.Now()
	if err := getUntil200(ctx, info.Addr, 30*time.Second); err != nil {
		return err
	}
	t3 := time.Now()
	if record {
		cb.add("bare_start", ms(t3.Sub(t0)))
		cb.add("bare_start.start", ms(t1.Sub(t0)))
		cb.add("bare_start.inspect", ms(t2.Sub(t1)))
		cb.add("bare_start.probe", ms(t3.Sub(t2)))
	}
	return nil
}

var coldClient = newClient(60*time.Second, false)

// gatewayCold: site C's service at zero with its standby prepared (initialized, the default); timed one
// GET / through Caddy until its 200. Afterwards the instance idles past
// idle_timeout and podcell stops and removes it, as in production.
func (b *bench) gatewayCold(ctx context.Context, cb *coldBench, record bool) error {
	standby, err := b.waitZero(ctx, "cold", 2*time.Minute)
	if err != nil {
		return err
	}
	if err := sleepCtx(ctx, *flagSettle); err != nil {
		return err
	}
	if id, err := b.atZero(ctx, "cold"); err != nil || id != standby {
		return fmt.Errorf("the cold service's standby changed during the settle pause (%.12s -> %.12s, %v)", standby, id, err)
	}
	readyBefore := len(b.readyTimes("cold"))
	t0 := time.Now()
	a := get(ctx, coldClient, "http://"+b.siteC+"/")
	t1 := time.Now()
	if a.err != nil || a.code != http.StatusOK {
		return fmt.Errorf("GET through the gateway at zero: code %d err %v", a.code, a.err)
	}
	if a.cold == "" {
		return fmt.Errorf("GET through the gateway at zero: no Podcell-Cold-Start header: it was not a cold start")
	}
	// Podman's default hostname is the container id's first 12 digits.
	if !strings.HasPrefix(standby, a.instance) || a.instance == "" {
		return fmt.Errorf("the cold start did not start the standby %.12s (answered by %q): it was a create + start", standby, a.instance)
	}
	if record {
		cb.add("gateway_cold", ms(t1.Sub(t0)))
		if v, err := strconv.ParseFloat(strings.TrimSuffix(a.cold, "ms"), 64); err == nil {
			cb.add("gateway_cold.waited", v)
			cb.add("gateway_cold.rest", ms(t1.Sub(t0))-v)
		}
		if took := b.readyTimes("cold"); len(took) > readyBefore {
			cb.add("gateway_cold.took", took[readyBefore])
		}
	}
	// Back to zero before the next timed step: the instance idles past
	// idle_timeout, podcell stops and removes it; the next standby is made.
	_, err = b.waitZero(ctx, "cold", 2*time.Minute)
	return err
}

// ColdResult is the cold-start comparison.
type ColdResult struct {
	N         int                  `json:"n"`
	Settle    string               `json:"settle"`
	Figures   []Stat               `json:"figures"`
	Ratio     Ratio                `json:"ratio"`
	Breakdown []Stat               `json:"breakdown"`
	Samples   map[string][]float64 `json:"samples_ms"`
}

func (b *bench) cold(ctx context.Context) (ColdResult, error) {
	cb := &coldBench{samples: map[string][]float64{}}
	steps := []struct {
		name string
		fn   func(record bool) error
	}{
		{"bare start", func(r bool) error { return b.bareStart(ctx, cb, r) }},
		{"gateway cold start", func(r bool) error { return b.gatewayCold(ctx, cb, r) }},
	}
	logf("cold: warm-up round")
	for _, s := range steps {
		if _, err := b.waitZero(ctx, "cold", 2*time.Minute); err != nil {
			return ColdResult{}, err
		}
		if err := s.fn(false); err != nil {
			return ColdResult{}, fmt.Errorf("warm-up %s: %w", s.name, err)
		}
	}
	for i := 0; i < *flagN; i++ {
		ord := []int{0, 1}
		if i%2 == 1 {
			ord = []int{1, 0}
		}
		for _, k := range ord {
			// Both sides start with the cold service at zero and nothing else moving.
			if _, err := b.waitZero(ctx, "cold", 2*time.Minute); err != nil {
				return ColdResult{}, err
			}
			if err := steps[k].fn(true); err != nil {
				return ColdResult{}, fmt.Errorf("sample %d, %s: %w", i+1, steps[k].name, err)
			}
		}
		logf("cold sample %d/%d: bare start %.1f ms, gateway cold start %.1f ms (load %s)", i+1, *flagN,
			last(cb.samples["bare_start"]), last(cb.samples["gateway_cold"]), mach.Loadavg())
	}
	res := ColdResult{N: *flagN, Settle: flagSettle.String(), Samples: cb.samples}
	bare, gw := stat("bare_start", cb.samples["bare_start"]), stat("gateway_cold", cb.samples["gateway_cold"])
	res.Figures = []Stat{bare, gw}
	res.Ratio = ratio("gateway cold start / bare start", gw, bare, coldTarget)
	for _, n := range []string{"bare_start.start", "bare_start.inspect", "bare_start.probe", "gateway_cold.waited", "gateway_cold.took", "gateway_cold.rest"} {
		if xs := cb.samples[n]; len(xs) > 0 {
			res.Breakdown = append(res.Breakdown, stat(n, xs))
		}
	}
	return res, nil
}

func last(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return xs[len(xs)-1]
}

// ---------------------------------------------------------------------------
// 3. Burst at zero.

type BurstResult struct {
	Rep          int       `json:"rep"`
	Service      string    `json:"service"`
	MaxInstances int       `json:"max_instances"`
	StartTook    []float64 `json:"start_took_ms"` // "took" of each instance ready, ms
	Requests     int       `json:"requests"`
	OK           int       `json:"ok"`
	Codes        string    `json:"codes"`
	FirstError   string    `json:"first_error,omitempty"`
	Min          float64   `json:"min_ms"`
	P50          float64   `json:"p50_ms"`
	P99          float64   `json:"p99_ms"`
	Max          float64   `json:"max_ms"`
	Total        float64   `json:"total_ms"`
	Started      int       `json:"instances_started"` // "instance ready" lines in Caddy's log, counted once back at zero
	StartFails   int       `json:"failed_starts"`     // "instance failed to start" lines
	Served       int       `json:"instances_served"`  // distinct X-Instance among the answers
	Cold         int       `json:"marked_cold"`       // answers with Podcell-Cold-Start
	Load         string    `json:"loadavg_before"`
	Latencies    []float64 `json:"latencies_ms"`
}

// readyTimes returns the "took" (ms) of every "instance ready" line of the
// service in Caddy's log, oldest first: the scaler's time from its start of
// an instance (Start, or Create + Start) to the app answering its probe.
func (b *bench) readyTimes(service string) []float64 {
	var out []float64
	for _, line := range strings.Split(b.caddy.Logs(), "\n") {
		if !strings.Contains(line, `"instance ready"`) {
			continue
		}
		var e struct {
			Msg     string `json:"msg"`
			Service string `json:"service"`
			Took    any    `json:"took"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Msg != "instance ready" || e.Service != service {
			continue
		}
		took := math.NaN()
		switch v := e.Took.(type) {
		case float64: // zap's default: seconds
			took = v * 1000
		case string:
			if d, err := time.ParseDuration(v); err == nil {
				took = ms(d)
			}
		}
		out = append(out, took)
	}
	return out
}

func (b *bench) burst(ctx context.Context, rep int, service, site string, maxInstances int) (BurstResult, error) {
	if _, err := b.waitZero(ctx, service, 2*time.Minute); err != nil {
		return BurstResult{}, err
	}
	if err := sleepCtx(ctx, time.Second); err != nil {
		return BurstResult{}, err
	}
	if id, err := b.atZero(ctx, service); err != nil || id == "" {
		return BurstResult{}, fmt.Errorf("service %s left zero before the burst (%v)", service, err)
	}
	res := BurstResult{Rep: rep, Service: service, MaxInstances: maxInstances, Requests: *flagBurstSize, Load: mach.Loadavg()}
	readyBefore := len(b.readyTimes(service))
	failsBefore := strings.Count(b.caddy.Logs(), `"instance failed to start"`)
	// A new client per burst: 500 clients each with its own new connection.
	c := newClient(60*time.Second, true)
	n := *flagBurstSize
	answers := make([]answer, n)
	lat := make([]float64, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	var t0 time.Time
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-gate
			answers[i] = get(ctx, c, "http://"+site+"/")
			lat[i] = ms(time.Since(t0))
		}(i)
	}
	time.Sleep(50 * time.Millisecond) // let the goroutines park at the gate
	t0 = time.Now()
	close(gate)
	wg.Wait()
	res.Total = ms(time.Since(t0))
	codes := map[string]int{}
	instances := map[string]bool{}
	var okLat []float64
	for i, a := range answers {
		key := strconv.Itoa(a.code)
		if a.err != nil {
			key = "error"
			if res.FirstError == "" {
				res.FirstError = a.err.Error()
			}
		}
		codes[key]++
		if a.err == nil && a.code == http.StatusOK {
			res.OK++
			okLat = append(okLat, lat[i])
			instances[a.instance] = true
		}
		if a.cold != "" {
			res.Cold++
		}
	}
	var keys []string
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			res.Codes += ", "
		}
		res.Codes += fmt.Sprintf("%s: %d", k, codes[k])
	}
	sort.Float64s(okLat)
	res.P50, res.P99 = mach.Percentile(okLat, 50), mach.Percentile(okLat, 99)
	if len(okLat) > 0 {
		res.Min, res.Max = okLat[0], okLat[len(okLat)-1]
	}
	res.Latencies = lat
	res.Served = len(instances)
	c.CloseIdleConnections()
	// Back to zero: the instances idle past idle_timeout and are removed.
	// Every start the burst caused has ended by then (ready or failed), so
	// the log lines count them all, late ones included.
	if _, err := b.waitZero(ctx, service, 2*time.Minute); err != nil {
		return res, err
	}
	took := b.readyTimes(service)[readyBefore:]
	res.Started = len(took)
	res.StartTook = took
	res.StartFails = strings.Count(b.caddy.Logs(), `"instance failed to start"`) - failsBefore
	logf("burst %d (%s): %d/%d ok (%s), first %.0f p50 %.0f p99 %.0f max %.0f ms, %d instances started (%d failed starts), %d served",
		rep, service, res.OK, n, res.Codes, res.Min, res.P50, res.P99, res.Max, res.Started, res.StartFails, res.Served)
	return res, nil
}

// ---------------------------------------------------------------------------

func run(ctx context.Context) error {
	raw, err := scaler.NewPodman(ctx, scalertest.URI())
	if err != nil {
		return err
	}
	actx, cancel := api(ctx)
	host, err := raw.Host(actx)
	cancel()
	if err != nil {
		return err
	}
	b := &bench{raw: raw, host: host, owner: *flagOwner, image: scalertest.HelloImage}
	// The podcell app's defaults (userns auto under rootful Podman).
	if b.sc, err = scaler.New(ctx, raw, scaler.Options{Owner: b.owner}); err != nil {
		return err
	}
	defer b.sc.Close(context.WithoutCancel(ctx))
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
		if err := b.cleanup(cctx); err != nil {
			logf("cleanup: %v", err)
		}
	}()

	dir, err := os.MkdirTemp("", "podcell-gwbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := *flagCaddy
	if bin == "" {
		logf("building ./cmd/caddy")
		if bin, err = harness.BuildCaddy(ctx, dir); err != nil {
			return err
		}
	}
	machine.Caddy = caddyVersion(bin)

	ports, err := harness.FreePorts(6)
	if err != nil {
		return err
	}
	b.admin = fmt.Sprintf("127.0.0.1:%d", ports[0])
	b.siteA = fmt.Sprintf("127.0.0.1:%d", ports[1])
	b.siteB = fmt.Sprintf("127.0.0.1:%d", ports[2])
	b.siteC = fmt.Sprintf("127.0.0.1:%d", ports[3])
	b.siteD = fmt.Sprintf("127.0.0.1:%d", ports[4])
	b.siteE = fmt.Sprintf("127.0.0.1:%d", ports[5])

	// Caddy starts with sites A, C and D; once A's instance runs, the config
	// is reloaded with site B, a reverse_proxy to that container. The reload
	// keeps the bench service's instance (same settings).
	logf("starting caddy")
	b.caddy, err = harness.StartCaddy(bin, dir, b.admin, b.caddyfile(false))
	if err != nil {
		return err
	}
	defer func() {
		logf("stopping caddy")
		b.caddy.Stop()
	}()
	first := newClient(60*time.Second, false)
	var a answer
	deadline := time.Now().Add(2 * time.Minute)
	for {
		a = get(ctx, first, "http://"+b.siteA+"/")
		if a.err == nil && a.code == http.StatusOK {
			break
		}
		if err := b.caddy.Alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("site A did not answer 200: code %d err %v\n%s", a.code, a.err, b.caddy.Tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	list, err := b.containers(ctx, "bench")
	if err != nil {
		return err
	}
	for _, c := range list {
		if c.State == scaler.StateRunning {
			if b.benchID != "" {
				return fmt.Errorf("the bench service runs more than one container")
			}
			b.benchID = c.ID
		}
	}
	if b.benchID == "" {
		return fmt.Errorf("the bench service runs no container after a request")
	}
	actx, cancel = api(ctx)
	info, err := raw.Inspect(actx, b.benchID)
	cancel()
	if err != nil {
		return err
	}
	b.benchAddr = info.Addr
	logf("bench instance %.12s at %s (answered as %s); reloading with site B", b.benchID, b.benchAddr, a.instance)
	if err := b.caddy.Load(b.caddyfile(true)); err != nil {
		return err
	}
	sides := []sideSpec{
		{"podcell", "http://" + b.siteA + "/", newClient(10*time.Second, true)},
		{"reverse_proxy", "http://" + b.siteB + "/", newClient(10*time.Second, true)},
	}
	if err := b.sameContainer(ctx, sides); err != nil {
		return err
	}
	zero := map[string]string{"cold": b.siteC, "burst": b.siteD}
	if *flagBurstCompare {
		zero["burst1"] = b.siteE
	}
	for svc, site := range zero {
		// podcell keeps a standby container only for a service in use:
		// one request each, and they idle back to zero with a standby, as
		// a service in use does.
		if a := get(ctx, newClient(time.Minute, false), "http://"+site+"/"); a.err != nil || a.code != http.StatusOK {
			return fmt.Errorf("first request to %s: %d %v", svc, a.code, a.err)
		}
		if _, err := b.waitZero(ctx, svc, 2*time.Minute); err != nil {
			return err
		}
	}

	rep := Report{Machine: machine, Owner: b.owner, WarmMemoryMB: *flagMemory, Caddyfile: b.caddyfile(true)}
	if lim, err := scaler.LimitsFor(*flagMemory, 64, 512); err == nil {
		rep.WarmCores = lim.Cores()
	}
	if lim, err := scaler.LimitsFor(coldMemory, 64, 512); err == nil {
		rep.ColdCores = lim.Cores()
	}
	began := time.Now()
	rep.Machine.LoadBefore = mach.Loadavg()
	b.noteLoad("start")
	if !skip("warm") {
		w, err := b.warm(ctx, sides)
		if err != nil {
			return fmt.Errorf("warm: %w", err)
		}
		rep.Warm = &w
		b.noteLoad("after warm open loop")
	}
	if !skip("closed") {
		c, err := b.closed(ctx, sides)
		if err != nil {
			return fmt.Errorf("closed loop: %w", err)
		}
		rep.Closed = &c
		b.noteLoad("after closed loop")
	}
	if err := b.sameContainer(ctx, sides); err != nil {
		return err
	}
	if !skip("cold") {
		c, err := b.cold(ctx)
		if err != nil {
			return fmt.Errorf("cold: %w", err)
		}
		rep.Cold = &c
		b.noteLoad("after cold starts")
	}
	if !skip("burst") {
		type target struct {
			service, site string
			max           int
		}
		targets := []target{{"burst", b.siteD, burstMaxIns}}
		if *flagBurstCompare {
			targets = append(targets, target{"burst1", b.siteE, 1})
		}
		for i := 1; i <= *flagBursts; i++ {
			for k := range targets {
				t := targets[(k+i-1)%len(targets)] // alternate which goes first
				r, err := b.burst(ctx, i, t.service, t.site, t.max)
				if err != nil {
					return fmt.Errorf("burst %d (%s): %w", i, t.service, err)
				}
				rep.Bursts = append(rep.Bursts, r)
			}
		}
		b.noteLoad("after bursts")
	}
	rep.Machine.LoadAfter = mach.Loadavg()
	rep.Machine.Duration = time.Since(began).Round(time.Second).String()
	rep.Loads = b.loads

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

// sameContainer checks that A and B answer from the same container (the
// hello app's X-Instance is its hostname).
func (b *bench) sameContainer(ctx context.Context, sides []sideSpec) error {
	aa := get(ctx, sides[0].c, sides[0].url)
	ab := get(ctx, sides[1].c, sides[1].url)
	if aa.err != nil || aa.code != 200 || ab.err != nil || ab.code != 200 {
		return fmt.Errorf("A answered %d %v, B answered %d %v", aa.code, aa.err, ab.code, ab.err)
	}
	if aa.instance != ab.instance || !strings.HasPrefix(b.benchID, aa.instance) {
		return fmt.Errorf("A answered from %q, B from %q, want both from %.12s", aa.instance, ab.instance, b.benchID)
	}
	return nil
}

func caddyVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
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
	Go            string `json:"go"`
	Caddy         string `json:"caddy"`
	LoadBefore    string `json:"loadavg_before"`
	LoadAfter     string `json:"loadavg_after"`
	Duration      string `json:"duration"`
}

func machineInfo(h scaler.HostInfo) Machine {
	return Machine{
		Date:          time.Now().UTC().Format(time.RFC3339),
		OS:            mach.OSName(),
		Kernel:        mach.ReadTrim("/proc/sys/kernel/osrelease"),
		CPUs:          runtime.NumCPU(),
		Podman:        h.Version,
		OCIRuntime:    h.OCIRuntime,
		CgroupVersion: h.CgroupVersion,
		Rootless:      h.Rootless,
		Go:            runtime.Version(),
	}
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

type Report struct {
	Machine      Machine       `json:"machine"`
	Owner        string        `json:"owner"`
	WarmMemoryMB int           `json:"warm_memory_mb"`
	WarmCores    float64       `json:"warm_cpu_cores"`
	ColdCores    float64       `json:"cold_cpu_cores"`
	Warm         *WarmResult   `json:"warm_open_loop,omitempty"`
	Closed       *ClosedResult `json:"warm_closed_loop,omitempty"`
	Cold         *ColdResult   `json:"cold_start,omitempty"`
	Bursts       []BurstResult `json:"bursts,omitempty"`
	Loads        []PhaseLoad   `json:"loadavg_by_phase"`
	Caddyfile    string        `json:"caddyfile"`
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

var statText = map[string]string{
	"bare_start":          "bare start: Start + Inspect + GET / every 1 ms until 200",
	"gateway_cold":        "gateway cold start: one GET / through Caddy (service at zero, standby initialized) until its 200",
	"bare_start.start":    "bare start: Start call",
	"bare_start.inspect":  "bare start: Inspect call",
	"bare_start.probe":    "bare start: GET / polled until 200",
	"gateway_cold.waited": "gateway: podcell's wait for the instance (Podcell-Cold-Start header, whole ms)",
	"gateway_cold.took":   "gateway: the scaler's Start + Inspect + readiness probe (Caddy log: instance ready, took)",
	"gateway_cold.rest":   "gateway: the rest after podcell's wait (proxying the GET to the new instance, client)",
}

func (r Report) markdown() string {
	var s strings.Builder
	m := r.Machine
	fmt.Fprintf(&s, "## Gateway: podcell vs reverse_proxy and bare Podman, %s\n\n", m.Date)
	mode := "rootful"
	if m.Rootless {
		mode = "rootless"
	}
	fmt.Fprintf(&s, "Machine: %s, kernel %s, %d CPUs, podman %s %s (OCI runtime %s), cgroup %s, %s, caddy %s.  \n",
		m.OS, m.Kernel, m.CPUs, m.Podman, mode, m.OCIRuntime, m.CgroupVersion, m.Go, m.Caddy)
	fmt.Fprintf(&s, "One Caddy process, four sites on loopback ports; image %s.  \n", scalertest.HelloImage)
	fmt.Fprintf(&s, "Load average %s before, %s after; %s. By phase:", m.LoadBefore, m.LoadAfter, m.Duration)
	for i, l := range r.Loads {
		if i > 0 {
			s.WriteString(";")
		}
		fmt.Fprintf(&s, " %s %s", l.Phase, l.Load)
	}
	s.WriteString(".\n\n")

	if w := r.Warm; w != nil {
		fmt.Fprintf(&s, "### Warm, open loop at %.0f requests/s\n\n", w.Rate)
		fmt.Fprintf(&s, "GET / to one running instance (%d MB, %.3f core), %d rounds of %s per side in the order %s; "+
			"latency from each request's scheduled send time; throughput = successful responses / (first scheduled send to last response).\n\n",
			r.WarmMemoryMB, r.WarmCores, w.Rounds, w.Round, strings.Join(abbrev(w.Order), ""))
		s.WriteString("| side | sent | ok | errors | throughput | p50 | p90 | p99 | p99.9 | max | send lag p50 / p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, x := range []Summary{w.Podcell, w.Baseline} {
			fmt.Fprintf(&s, "| %s | %d | %d | %d | %.1f/s | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %.1f ms | %.3f / %.3f ms |\n",
				sideText(x.Side), x.Sent, x.OK, x.Errors, x.Throughput, x.P50, x.P90, x.P99, x.P999, x.Max, x.LagP50, x.LagP99)
		}
		s.WriteString("\n| comparison | value | target | met |\n|---|---:|---:|---|\n")
		fmt.Fprintf(&s, "| throughput podcell / reverse_proxy | %.3fx | >= %.2fx | %s |\n", w.TputRatio, tputTarget, yes(w.TputMet))
		fmt.Fprintf(&s, "| p99 podcell - reverse_proxy | %+.3f ms | <= +%.1f ms | %s |\n", w.P99DiffMS, p99Target, yes(w.P99Met))
		fmt.Fprintf(&s, "| p50 podcell - reverse_proxy | %+.3f ms | | |\n", w.P50DiffMS)
		fmt.Fprintf(&s, "| p99 podcell - reverse_proxy, median of the %d rounds' differences | %+.3f ms | | |\n", len(w.RoundDiffs), w.MedianDiff)
		s.WriteString("\nPer round (A = podcell, B = reverse_proxy; errors in parentheses where any):\n\n" +
			"| round | A throughput | A p50 | A p99 | A max | B throughput | B p50 | B p99 | B max | p99 A - B | load after the pair |\n" +
			"|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for i, p := range pairs(w.PerRound) {
			fmt.Fprintf(&s, "| %d | %.1f/s%s | %.3f ms | %.3f ms | %.1f ms | %.1f/s%s | %.3f ms | %.3f ms | %.1f ms | %+.3f ms | %s |\n",
				i+1, p[0].Throughput, errNote(p[0].Errors), p[0].P50, p[0].P99, p[0].Max,
				p[1].Throughput, errNote(p[1].Errors), p[1].P50, p[1].P99, p[1].Max, p[0].P99-p[1].P99, laterLoad(p))
		}
		s.WriteString("\n")
	}
	if c := r.Closed; c != nil {
		fmt.Fprintf(&s, "### Warm, closed loop: %d workers\n\n", c.Workers)
		fmt.Fprintf(&s, "Each worker sends its next GET / when the last one answered; %d rounds of %s per side, alternating.\n\n", c.Rounds, c.Round)
		s.WriteString("| side | ok | errors | requests/s | p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, x := range []Summary{c.Podcell, c.Baseline} {
			fmt.Fprintf(&s, "| %s | %d | %d | %.0f | %.3f ms | %.3f ms | %.1f ms |\n", sideText(x.Side), x.OK, x.Errors, x.Throughput, x.P50, x.P99, x.Max)
		}
		fmt.Fprintf(&s, "\nrequests/s podcell / reverse_proxy: **%.3fx** pooled, %.3fx median of the rounds' ratios.\n\n", c.Ratio, c.MedianRatio)
		s.WriteString("| round | A requests/s | B requests/s | A / B | load after the pair |\n|---:|---:|---:|---:|---|\n")
		for i, p := range pairs(c.PerRound) {
			fmt.Fprintf(&s, "| %d | %.0f%s | %.0f%s | %.3fx | %s |\n", i+1, p[0].Throughput, errNote(p[0].Errors),
				p[1].Throughput, errNote(p[1].Errors), p[0].Throughput/p[1].Throughput, laterLoad(p))
		}
		s.WriteString("\n")
	}
	if c := r.Cold; c != nil {
		s.WriteString("### Cold start through the gateway vs bare `podman start`\n\n")
		fmt.Fprintf(&s, "%d samples of each, interleaved (order alternating); containers of %d MB, %.3f core, the scaler's spec; "+
			"%s settle before each timed step; the cold service returns to zero by idle_timeout %s.\n\n", c.N, coldMemory, r.ColdCores, c.Settle, coldIdle)
		s.WriteString("| figure | median | p90 | max |\n|---|---:|---:|---:|\n")
		for _, f := range c.Figures {
			fmt.Fprintf(&s, "| %s | %.1f ms | %.1f ms | %.1f ms |\n", statText[f.Name], f.Median, f.P90, f.Max)
		}
		q := c.Ratio
		s.WriteString("\n| ratio | median | p90 | target | met |\n|---|---:|---:|---:|---|\n")
		fmt.Fprintf(&s, "| %s | %.2fx | %.2fx | <= %.2fx | %s |\n", q.Name, q.Median, q.P90, q.Target, yes(q.Met))
		s.WriteString("\n| part | median | p90 | max |\n|---|---:|---:|---:|\n")
		for _, f := range c.Breakdown {
			fmt.Fprintf(&s, "| %s | %.1f ms | %.1f ms | %.1f ms |\n", statText[f.Name], f.Median, f.P90, f.Max)
		}
		s.WriteString("\n")
	}
	if len(r.Bursts) > 0 {
		fmt.Fprintf(&s, "### Burst at zero: %d concurrent GET /\n\n", r.Bursts[0].Requests)
		fmt.Fprintf(&s, "Service at zero (standby initialized), max_instances %d, concurrency %d, queue_size %d, %d MB; latency from the release of all requests at once; "+
			"fastest start: the smallest \"took\" of the burst's \"instance ready\" log lines (the scaler's start until the probe answered).\n\n",
			burstMaxIns, burstConc, burstQueue, coldMemory)
		s.WriteString("| burst | max_instances | success | answers | first answer | p50 | p99 | max | instances started (failed) | instances that served | fastest start | load before |\n" +
			"|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, x := range r.Bursts {
			fastest := math.NaN()
			if len(x.StartTook) > 0 {
				fastest = slices.Min(x.StartTook)
			}
			fmt.Fprintf(&s, "| %d | %d | %d/%d (%.1f%%) | %s | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %d (%d) | %d | %.0f ms | %s |\n",
				x.Rep, x.MaxInstances, x.OK, x.Requests, 100*float64(x.OK)/float64(x.Requests), x.Codes, x.Min, x.P50, x.P99, x.Max,
				x.Started, x.StartFails, x.Served, fastest, x.Load)
		}
		s.WriteString("\n")
	}
	return s.String()
}

func errNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d)", n)
}

// laterLoad is the load average after the second round of a pair.
func laterLoad(p [2]Summary) string {
	// Rounds alternate AB, BA: odd rounds end with B, even ones with A.
	if p[0].Round%2 == 1 {
		return p[1].Load
	}
	return p[0].Load
}

func sideText(side string) string {
	if side == "podcell" {
		return "A: podcell"
	}
	return "B: reverse_proxy"
}

func abbrev(order []string) []string {
	out := make([]string, len(order))
	for i, o := range order {
		out[i] = "B"
		if o == "podcell" {
			out[i] = "A"
		}
	}
	return out
}
