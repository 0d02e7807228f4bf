// Command scale measures how podcell's cost grows with the number of
// services: one Caddy with a host-mode site, and N services declared through
// the admin API (PUT /podcell/services/<name>, the hello image, 256 MB), each
// left at zero. At N = 1 (the baseline) and at each step up to -n it reports:
//
//	memory        Caddy's resident set (VmRSS of /proc/<pid>/status) and Go
//	              heap in use (Caddy's /metrics), after a forced GC, per idle
//	              service: (at N - at 1) / (N - 1)
//	CPU at rest   Caddy's user + system CPU time over 10 s with nothing to do
//	declare       the PUTs of the step's new services, total and per PUT, and
//	              how long until Podman's container count settles after them
//	reload        POST /load of the same Caddyfile (forced), median of -reloads
//	podman        the containers of this benchmark's owner and of the host, the
//	              time of a list call (the owner's, as the scaler makes it, and
//	              all) and of the start of an event stream (the call that
//	              returns once Podman answered), medians of 5
//	cold start    -probes services declared at that N and used once each: the
//	              first request to each (never used: it finds what podcell
//	              keeps for a never-used service) and, after it went back to
//	              zero (idle_timeout 2s), its first request again (recently
//	              used); then it is deleted
//	warm path     p50/p99 of -warm sequential requests to an active probe
//
// Every container carries podcell.owner=<-owner> (default podcellbench-scale);
// all of them are removed when it starts and when it ends, after the
// services were deleted through the admin API. Nothing else should use
// Podman meanwhile (hold the shared Podman lock).
//
// Run from the repository root:
//
//	GOFLAGS=-tags=containers_image_openpgp CGO_ENABLED=0 go run ./benchmarks/scale -n 1000
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/containers"

	"github.com/podcell/podcell/benchmarks/harness"
	mach "github.com/podcell/podcell/benchmarks/machine"
	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// Targets of issue 13.
const (
	memTargetKB = 20.0 // Caddy's memory per idle service, at most
	ratioTarget = 1.2  // at N against at 1, at most
)

var (
	flagN       = flag.Int("n", 1000, "services at the last step")
	flagSteps   = flag.String("steps", "", "comma-separated service counts to measure at (default 1, then 10, 100... below -n, then -n)")
	flagProbes  = flag.Int("probes", 3, "services cold-started (and deleted) at each step")
	flagWarm    = flag.Int("warm", 1000, "sequential requests of the warm path")
	flagReloads = flag.Int("reloads", 3, "config reloads timed at each step")
	flagOwner   = flag.String("owner", "podcellbench-scale", "owner label of every container of the run")
	flagCaddy   = flag.String("caddy", "", "Caddy binary (default: build ./cmd/caddy into a temporary directory)")
	flagJSON    = flag.String("json", "", "also write the results as JSON to this file")
	flagHeap    = flag.String("heap-profile", "", "write Caddy's heap profile at the last step to this file (go tool pprof reads it)")
	flagLabel   = flag.String("label", "", "a note for the report's title (e.g. the commit measured)")
)

const (
	domain     = "scale.localhost"
	apiTimeout = 5 * time.Minute // one Podman call; a wedged Podman fails the run
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale: "+format+"\n", args...)
}

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		logf("%v", err)
		os.Exit(1)
	}
}

// steps are the service counts to measure at, ascending, starting at 1.
func steps() ([]int, error) {
	var out []int
	if *flagSteps == "" {
		for n := 1; n < *flagN; n *= 10 {
			out = append(out, n)
		}
		out = append(out, *flagN)
	} else {
		for _, f := range strings.Split(*flagSteps, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("-steps %q: want whole numbers >= 1", *flagSteps)
			}
			out = append(out, n)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if out[0] != 1 {
		out = append([]int{1}, out...)
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Caddy

// caddyProc is the Caddy under test, with its host-mode site.
type caddyProc struct {
	*harness.Caddy
	admin string
	site  string
	file  string
}

func caddyfile(admin string, port int) string {
	return fmt.Sprintf(`{
	admin %s
	auto_https off
	podcell {
		owner %s
	}
}
http://:%d {
	bind 127.0.0.1
	podcell {
		hosts *.%s
	}
}
`, admin, *flagOwner, port, domain)
}

func startCaddy(bin, dir string) (*caddyProc, error) {
	ports, err := harness.FreePorts(2)
	if err != nil {
		return nil, err
	}
	c := &caddyProc{admin: fmt.Sprintf("127.0.0.1:%d", ports[0]), site: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		file: filepath.Join(dir, "Caddyfile")}
	if c.Caddy, err = harness.StartCaddy(bin, dir, c.admin, caddyfile(c.admin, ports[1])); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		// The site answers once every app started, podcell's included
		// (the admin API answers before).
		if resp, err := http.Get("http://" + c.site + "/"); err == nil {
			resp.Body.Close()
			return c, nil
		}
		if err := c.Alive(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("caddy's site did not come up:\n%s", c.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var adminClient = &http.Client{Timeout: 5 * time.Minute}

// call makes an admin API request.
func (c *caddyProc) call(method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://"+c.admin+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// reload loads the same Caddyfile again. Caddy skips a load of an
// unchanged config unless told to revalidate.
func (c *caddyProc) reload() (time.Duration, error) {
	b, err := os.ReadFile(c.file)
	if err != nil {
		return 0, err
	}
	req, _ := http.NewRequest("POST", "http://"+c.admin+"/load", bytes.NewReader(b))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	began := time.Now()
	resp, err := adminClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	took := time.Since(began)
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("POST /load: %d %s", resp.StatusCode, body)
	}
	return took, nil
}

// memory forces a GC in Caddy (the pprof heap handler's gc=1), lets the
// runtime settle, and reads its resident set and Go heap in use.
func (c *caddyProc) memory() (rssKB, heapKB float64, err error) {
	for range 2 {
		if code, _, err := c.call("GET", "/debug/pprof/heap?gc=1", ""); err != nil || code != 200 {
			return 0, 0, fmt.Errorf("force a GC through /debug/pprof/heap?gc=1: %d %v", code, err)
		}
		time.Sleep(time.Second)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Pid()))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				rssKB, _ = strconv.ParseFloat(f[0], 64)
			}
		}
	}
	_, metrics, err := c.call("GET", "/metrics", "")
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(metrics))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			b, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			heapKB = b / 1024
		}
	}
	if rssKB == 0 || heapKB == 0 {
		return 0, 0, fmt.Errorf("VmRSS %v KB, go_memstats_heap_inuse_bytes %v KB: one is missing", rssKB, heapKB)
	}
	return rssKB, heapKB, nil
}

// cpuTicks is Caddy's user + system CPU time so far, in clock ticks
// (fields 14 and 15 of /proc/<pid>/stat).
func (c *caddyProc) cpuTicks() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Pid()))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields count from after its ')'.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", c.Pid())
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return u + s, nil
}

// idleCPU is Caddy's CPU use over d with no request and no API call, in
// milliseconds of CPU per second (clock ticks are 10 ms here: USER_HZ 100).
func (c *caddyProc) idleCPU(ctx context.Context, d time.Duration) (float64, error) {
	t0, err := c.cpuTicks()
	if err != nil {
		return 0, err
	}
	began := time.Now()
	if err := sleepCtx(ctx, d); err != nil {
		return 0, err
	}
	t1, err := c.cpuTicks()
	if err != nil {
		return 0, err
	}
	return (t1 - t0) * 10 / time.Since(began).Seconds(), nil
}

// status is the part of GET /podcell/services/<name> the benchmark reads.
type status struct {
	States    map[string]int `json:"states"`
	Instances []struct {
		ID    string `json:"ID"`
		State string `json:"State"`
	} `json:"instances"`
}

func (c *caddyProc) status(name string) (status, error) {
	var st status
	code, body, err := c.call("GET", "/podcell/services/"+name, "")
	if err != nil {
		return st, err
	}
	if code != 200 {
		return st, fmt.Errorf("GET /podcell/services/%s: %d %s", name, code, body)
	}
	return st, json.Unmarshal(body, &st)
}

// ---------------------------------------------------------------------------
// The run

type bench struct {
	raw      *scaler.Podman
	caddy    *caddyProc
	image    string
	client   *http.Client // keep-alive, for the site
	declared int
}

func serviceName(i int) string { return fmt.Sprintf("s%05d", i) }

func (b *bench) spec(extra string) string {
	return fmt.Sprintf(`{"image": %q, "memory_mb": 256%s}`, b.image, extra)
}

func (b *bench) put(name, body string) error {
	code, out, err := b.caddy.call("PUT", "/podcell/services/"+name, body)
	if err != nil {
		return err
	}
	if code != 201 && code != 200 {
		return fmt.Errorf("PUT /podcell/services/%s: %d %s", name, code, out)
	}
	return nil
}

func (b *bench) del(name string) error {
	code, out, err := b.caddy.call("DELETE", "/podcell/services/"+name, "")
	if err != nil {
		return err
	}
	if code != 204 {
		return fmt.Errorf("DELETE /podcell/services/%s: %d %s", name, code, out)
	}
	return nil
}

func api(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, apiTimeout)
}

// owned lists the containers of this run's owner.
func (b *bench) owned(ctx context.Context) ([]scaler.ContainerInfo, error) {
	actx, cancel := api(ctx)
	defer cancel()
	return b.raw.List(actx, scaler.LabelOwner, *flagOwner)
}

// listAll lists every container of the host, as `podman ps -a` does.
func (b *bench) listAll(ctx context.Context) (int, error) {
	actx, cancel := api(ctx)
	defer cancel()
	list, err := containers.List(b.raw.BindingsContext(actx), new(containers.ListOptions).WithAll(true))
	return len(list), err
}

// settle waits until the owner's container count has not moved for 3 s
// and every instance Caddy reports has its container.
func (b *bench) settle(ctx context.Context, within time.Duration) (int, error) {
	deadline := time.Now().Add(within)
	last, same := -1, 0
	for {
		list, err := b.owned(ctx)
		if err != nil {
			return 0, err
		}
		if len(list) == last {
			same++
		} else {
			same = 0
		}
		last = len(list)
		if same >= 6 {
			return last, nil
		}
		if err := b.caddy.Alive(); err != nil {
			return 0, err
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("the container count did not settle within %s (last %d)", within, last)
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// get makes one request to a service through the host-mode site.
func (b *bench) get(ctx context.Context, service string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+b.caddy.site+"/", nil)
	if err != nil {
		return 0, err
	}
	req.Host = service + "." + domain
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// coldStart times the first request to a service at zero until its 200.
func (b *bench) coldStart(ctx context.Context, service string) (float64, error) {
	began := time.Now()
	code, err := b.get(ctx, service)
	took := ms(time.Since(began))
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("cold start of %s: %d", service, code)
	}
	return took, nil
}

// atRest waits until the service runs nothing and every instance it keeps
// (a standby) has its container.
func (b *bench) atRest(ctx context.Context, service string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		st, err := b.status(service)
		if err != nil {
			return err
		}
		rest := true
		for _, inst := range st.Instances {
			if inst.State != "standby" || inst.ID == "" {
				rest = false
			}
		}
		if rest {
			// And Podman has no other container of it (a stopped one
			// still being removed).
			list, err := b.owned(ctx)
			if err != nil {
				return err
			}
			n := 0
			for _, c := range list {
				if c.Labels[scaler.LabelService] == service {
					n++
				}
			}
			if n == len(st.Instances) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("service %s did not come to rest within %s: %+v", service, within, st)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func (b *bench) status(service string) (status, error) { return b.caddy.status(service) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Step is what was measured at one service count.
type Step struct {
	N          int       `json:"n"`
	Declared   int       `json:"declared"` // services declared in this step
	DeclareMs  float64   `json:"declare_total_ms"`
	PutMs      []float64 `json:"put_ms"`
	ProbePutMs []float64 `json:"probe_put_ms"` // the PUTs of the probes, at N
	SettleMs   float64   `json:"settle_ms"`    // from the step's last PUT until the container count settled
	RSSKB      float64   `json:"rss_kb"`
	HeapKB     float64   `json:"heap_inuse_kb"`
	IdleCPU    float64   `json:"idle_cpu_ms_per_s"` // Caddy's CPU over 10 s at rest
	ReloadMs   []float64 `json:"reload_ms"`
	Owned      int       `json:"owner_containers"`
	AllCount   int       `json:"host_containers"`
	ListMs     []float64 `json:"list_owner_ms"`
	ListAllMs  []float64 `json:"list_all_ms"`
	EventsMs   []float64 `json:"events_start_ms"`
	ColdNewMs  []float64 `json:"cold_never_used_ms"`
	ColdUsedMs []float64 `json:"cold_recently_used_ms"`
	WarmMs     []float64 `json:"warm_ms,omitempty"`
	WarmP50    float64   `json:"warm_p50_ms"`
	WarmP99    float64   `json:"warm_p99_ms"`
	Load       string    `json:"loadavg"`
}

func (b *bench) step(ctx context.Context, n int) (Step, error) {
	st := Step{N: n}
	logf("N=%d: declaring services %d to %d", n, b.declared+1, n)
	began := time.Now()
	for b.declared < n {
		name := serviceName(b.declared + 1)
		t := time.Now()
		if err := b.put(name, b.spec("")); err != nil {
			return st, err
		}
		st.PutMs = append(st.PutMs, ms(time.Since(t)))
		b.declared++
		st.Declared++
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
	}
	st.DeclareMs = ms(time.Since(began))
	t := time.Now()
	owned, err := b.settle(ctx, 30*time.Minute)
	if err != nil {
		return st, err
	}
	// settle waits 3 s of no change after the last: not part of the time.
	st.SettleMs = max(0, ms(time.Since(t))-3000)
	logf("N=%d: declared in %.0f ms, %d containers of the owner after %.0f ms", n, st.DeclareMs, owned, st.SettleMs)

	if st.IdleCPU, err = b.caddy.idleCPU(ctx, 10*time.Second); err != nil {
		return st, err
	}
	if st.RSSKB, st.HeapKB, err = b.caddy.memory(); err != nil {
		return st, err
	}
	if *flagHeap != "" && n == *flagN {
		_, prof, err := b.caddy.call("GET", "/debug/pprof/heap", "")
		if err == nil {
			err = os.WriteFile(*flagHeap, prof, 0o644)
		}
		if err != nil {
			return st, fmt.Errorf("heap profile: %w", err)
		}
	}
	logf("N=%d: RSS %.0f KB, heap in use %.0f KB, idle CPU %.1f ms/s", n, st.RSSKB, st.HeapKB, st.IdleCPU)
	for range *flagReloads {
		d, err := b.caddy.reload()
		if err != nil {
			return st, err
		}
		st.ReloadMs = append(st.ReloadMs, ms(d))
	}
	if _, err := b.settle(ctx, 10*time.Minute); err != nil {
		return st, err
	}
	logf("N=%d: reloads %v ms", n, round(st.ReloadMs))

	for range 5 {
		t := time.Now()
		list, err := b.owned(ctx)
		if err != nil {
			return st, err
		}
		st.ListMs = append(st.ListMs, ms(time.Since(t)))
		st.Owned = len(list)
		t = time.Now()
		if st.AllCount, err = b.listAll(ctx); err != nil {
			return st, err
		}
		st.ListAllMs = append(st.ListAllMs, ms(time.Since(t)))
		ectx, cancel := context.WithCancel(ctx)
		t = time.Now()
		_, err = b.raw.Events(ectx, scaler.LabelOwner, *flagOwner)
		st.EventsMs = append(st.EventsMs, ms(time.Since(t)))
		cancel()
		if err != nil {
			return st, err
		}
	}
	logf("N=%d: %d containers of the owner, %d on the host; list %v ms, list all %v ms, events %v ms",
		n, st.Owned, st.AllCount, round(st.ListMs), round(st.ListAllMs), round(st.EventsMs))

	for p := 1; p <= *flagProbes; p++ {
		name := fmt.Sprintf("p%05d-%d", n, p)
		// A short idle timeout brings it back to zero between its two
		// cold starts; pausing is off so it goes straight to zero.
		t := time.Now()
		if err := b.put(name, b.spec(`, "idle_timeout": "2s", "pause_after": -1`)); err != nil {
			return st, err
		}
		st.ProbePutMs = append(st.ProbePutMs, ms(time.Since(t)))
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return st, err
		}
		if err := b.atRest(ctx, name, 5*time.Minute); err != nil {
			return st, err
		}
		if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
			return st, err
		}
		cold, err := b.coldStart(ctx, name)
		if err != nil {
			return st, err
		}
		st.ColdNewMs = append(st.ColdNewMs, cold)
		if p == *flagProbes {
			for range *flagWarm {
				t := time.Now()
				code, err := b.get(ctx, name)
				if err != nil {
					return st, err
				}
				if code != 200 {
					return st, fmt.Errorf("warm request to %s: %d", name, code)
				}
				st.WarmMs = append(st.WarmMs, ms(time.Since(t)))
			}
		}
		// Back to zero, its standby (if any) prepared.
		if err := sleepCtx(ctx, 2500*time.Millisecond); err != nil {
			return st, err
		}
		if err := b.atRest(ctx, name, 5*time.Minute); err != nil {
			return st, err
		}
		if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
			return st, err
		}
		again, err := b.coldStart(ctx, name)
		if err != nil {
			return st, err
		}
		st.ColdUsedMs = append(st.ColdUsedMs, again)
		logf("N=%d: probe %s: cold start never used %.0f ms, recently used %.0f ms", n, name, cold, again)
		if err := b.del(name); err != nil {
			return st, err
		}
	}
	w := slices.Sorted(slices.Values(st.WarmMs))
	st.WarmP50, st.WarmP99 = mach.Percentile(w, 50), mach.Percentile(w, 99)
	logf("N=%d: warm p50 %.3f ms, p99 %.3f ms", n, st.WarmP50, st.WarmP99)
	st.Load = mach.Loadavg()
	return st, nil
}

func round(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(int(x*10+0.5)) / 10
	}
	return out
}

// cleanup deletes the services through the admin API, waits for their
// containers to go, then removes any container of the owner left.
func (b *bench) cleanup(ctx context.Context) error {
	var errs []error
	if b.caddy != nil && b.caddy.Alive() == nil {
		_, body, err := b.caddy.call("GET", "/podcell/services", "")
		var list []struct {
			Name string `json:"name"`
		}
		if err == nil {
			json.Unmarshal(body, &list)
		}
		logf("deleting %d services through the admin API", len(list))
		for _, s := range list {
			if err := b.del(s.Name); err != nil {
				errs = append(errs, err)
			}
		}
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			left, err := b.owned(ctx)
			if err != nil || len(left) == 0 {
				break
			}
			time.Sleep(time.Second)
		}
		b.caddy.Stop()
	}
	left, err := b.owned(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, c := range left {
		actx, cancel := api(ctx)
		if c.State == scaler.StatePaused {
			b.raw.Unpause(actx, c.ID)
		}
		if err := b.raw.Remove(actx, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.Name, err))
		}
		cancel()
	}
	if len(left) > 0 {
		logf("removed %d container(s) left with %s=%s", len(left), scaler.LabelOwner, *flagOwner)
	}
	return errors.Join(errs...)
}

func run(ctx context.Context) error {
	stepList, err := steps()
	if err != nil {
		return err
	}
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
	b := &bench{raw: raw, image: scalertest.HelloImage,
		client: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	logf("podman %s, %s, cgroup %s, %d CPUs; building %s", host.Version, mach.RootMode(host), host.CgroupVersion, host.CPUs, b.image)
	if err := scalertest.BuildHello(ctx, raw); err != nil {
		return err
	}
	if err := b.cleanup(ctx); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "podcell-bench-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := *flagCaddy
	if bin == "" {
		logf("building Caddy")
		if bin, err = harness.BuildCaddy(ctx, tmp); err != nil {
			return err
		}
	}
	rep := Report{Label: *flagLabel, Date: time.Now().UTC().Format(time.RFC3339), Owner: *flagOwner, LoadBefore: mach.Loadavg(),
		Machine: fmt.Sprintf("%s, kernel %s, %d CPUs, podman %s %s (OCI runtime %s), cgroup %s, %s, caddy %s", mach.OSName(),
			mach.ReadTrim("/proc/sys/kernel/osrelease"), runtime.NumCPU(), host.Version, mach.RootMode(host), host.OCIRuntime,
			host.CgroupVersion, runtime.Version(), caddyVersion(bin))}
	began := time.Now()
	if b.caddy, err = startCaddy(bin, tmp); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Minute)
		defer cancel()
		if err := b.cleanup(cctx); err != nil {
			logf("cleanup: %v", err)
		}
	}()
	for _, n := range stepList {
		st, err := b.step(ctx, n)
		if err != nil {
			return fmt.Errorf("N=%d: %w\ncaddy's log:\n%s", n, err, b.caddy.Tail(20))
		}
		rep.Steps = append(rep.Steps, st)
	}
	rep.Duration = time.Since(began).Round(time.Second).String()
	rep.LoadAfter = mach.Loadavg()
	if *flagJSON != "" {
		j, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*flagJSON, j, 0o644); err != nil {
			return err
		}
	}
	fmt.Print(rep.markdown())
	return nil
}

func caddyVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(out)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// ---------------------------------------------------------------------------
// The report

type Report struct {
	Label      string `json:"label,omitempty"`
	Date       string `json:"date"`
	Machine    string `json:"machine"`
	Owner      string `json:"owner"`
	LoadBefore string `json:"loadavg_before"`
	LoadAfter  string `json:"loadavg_after"`
	Duration   string `json:"duration"`
	Steps      []Step `json:"steps"`
}

func med(xs []float64) float64 {
	return mach.Percentile(slices.Sorted(slices.Values(xs)), 50)
}

func p99(xs []float64) float64 {
	return mach.Percentile(slices.Sorted(slices.Values(xs)), 99)
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func (r Report) markdown() string {
	var w strings.Builder
	title := "Services at scale"
	if r.Label != "" {
		title += " (" + r.Label + ")"
	}
	fmt.Fprintf(&w, "## %s, %s\n\n", title, r.Date)
	fmt.Fprintf(&w, "Machine: %s.  \n", r.Machine)
	fmt.Fprintf(&w, "Load average %s before, %s after; %s. Owner label `%s`.  \n", r.LoadBefore, r.LoadAfter, r.Duration, r.Owner)
	fmt.Fprintf(&w, "One Caddy, a host-mode site (`podcell { hosts *.%s }`); each service declared with `PUT /podcell/services/<name>` "+
		"`{\"image\": %q, \"memory_mb\": 256}` and left at zero. Caddy's CPU at rest: user + system time over 10 s with no request and no API call, per second. Memory after a forced GC (`/debug/pprof/heap?gc=1` twice, 1 s apart). "+
		"Cold starts: %d services declared at each N (`idle_timeout 2s`, `pause_after off`), each requested once when never used and once more after it went back to zero, then deleted; "+
		"warm path: %d sequential requests to the last of them.\n\n", domain, scalertest.HelloImage, *flagProbes, *flagWarm)
	fmt.Fprintf(&w, "| N | declare (total) | per PUT median / p99 | containers settle | Caddy RSS | Go heap in use | Caddy CPU at rest | reload median | owner's containers / host's | list (owner) | list (all) | events start | cold start, never used | cold start, recently used | warm p50 / p99 |\n")
	fmt.Fprintf(&w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Steps {
		fmt.Fprintf(&w, "| %d | %.0f ms | %.2f / %.2f ms | %.0f ms | %.1f MB | %.1f MB | %.1f ms/s | %.0f ms | %d / %d | %.1f ms | %.1f ms | %.1f ms | %.0f ms (%s) | %.0f ms (%s) | %.3f / %.3f ms |\n",
			s.N, s.DeclareMs, med(s.PutMs), p99(s.PutMs), s.SettleMs, s.RSSKB/1024, s.HeapKB/1024, s.IdleCPU, med(s.ReloadMs),
			s.Owned, s.AllCount, med(s.ListMs), med(s.ListAllMs), med(s.EventsMs),
			med(s.ColdNewMs), list(s.ColdNewMs), med(s.ColdUsedMs), list(s.ColdUsedMs), s.WarmP50, s.WarmP99)
	}
	if len(r.Steps) < 2 {
		return w.String()
	}
	base := r.Steps[0]
	fmt.Fprintf(&w, "\nAgainst N = 1 (medians; memory as (at N - at 1) / (N - 1)). Targets: memory per idle service <= %.0f KB in Caddy; the others <= %.1fx.\n\n", memTargetKB, ratioTarget)
	fmt.Fprintf(&w, "| N | RSS per idle service | heap per idle service | memory target met | PUT at N (probes) | reload | list (owner) | events start | cold start, never used | cold start, recently used | warm p50 | warm p99 |\n")
	fmt.Fprintf(&w, "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Steps[1:] {
		rssPer := (s.RSSKB - base.RSSKB) / float64(s.N-1)
		heapPer := (s.HeapKB - base.HeapKB) / float64(s.N-1)
		q := func(a, b float64) string {
			x := a / b
			mark := ""
			if x > ratioTarget {
				mark = " (over)"
			}
			return fmt.Sprintf("%.2fx%s", x, mark)
		}
		fmt.Fprintf(&w, "| %d | %.1f KB | %.1f KB | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.N, rssPer, heapPer, yes(max(rssPer, heapPer) <= memTargetKB),
			q(med(s.ProbePutMs), med(base.ProbePutMs)), q(med(s.ReloadMs), med(base.ReloadMs)), q(med(s.ListMs), med(base.ListMs)),
			q(med(s.EventsMs), med(base.EventsMs)), q(med(s.ColdNewMs), med(base.ColdNewMs)), q(med(s.ColdUsedMs), med(base.ColdUsedMs)),
			q(s.WarmP50, base.WarmP50), q(s.WarmP99, base.WarmP99))
	}
	return w.String()
}

func list(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strings.Join(parts, ", ")
}
