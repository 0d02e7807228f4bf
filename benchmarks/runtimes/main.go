// Command runtimes measures the cold start of real runtimes through podcell
// (issue 13): the hello binary, the Python runtime and the Node.js runtime,
// each at 256 MB and at 1769 MB, in one Caddy process, against a bare Podman
// start of the same image and command at one core with no other limit.
//
//	bare       a created container with the scaler's spec (user namespace,
//	           read-only root, its cpuset) but a whole core of CPU quota, no
//	           memory limit and Podman's default network: timed Start +
//	           Inspect + GET / every 1 ms until 200
//	podcell    the service at zero with its standby prepared (it was used
//	           before, in the unrecorded warm-up; the default `standby
//	           initialized`): timed one GET / through Caddy until its 200,
//	           with the startup CPU boost (the default)
//	no boost   the same with startup_cpu off: what the tier's CPU cap costs
//	           a start
//	created    the same with the boost but `standby created` (a second
//	           Caddy): what initializing the standby ahead saves
//
// Samples are interleaved: each round takes one of each figure for every
// app and tier, the order rotating, after the same settle pause. After its
// GET a service idles past idle_timeout back to zero.
//
// It also reads, through Caddy, the CPU quota inside a ready 256 MB hello
// instance (GET /limits): after the boost it must be the tier's.
//
// Run from the repository root (needs the Podman API, the runtime base
// images of make base-images, and builds Caddy and the hello image):
//
//	GOFLAGS=-tags=containers_image_openpgp CGO_ENABLED=0 go run ./benchmarks/runtimes -n 7
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/podcell/podcell/benchmarks/harness"
	mach "github.com/podcell/podcell/benchmarks/machine"
	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

const (
	port        = 8080
	idleTimeout = "1s"
	ratioTarget = 1.2   // podcell / bare, median
	pythonMaxMS = 300.0 // the Python runtime's median through podcell, ms
)

var (
	flagN      = flag.Int("n", 7, "samples of each figure")
	flagCaddy  = flag.String("caddy", "", "Caddy binary to run (default: build ./cmd/caddy)")
	flagSettle = flag.Duration("settle", 300*time.Millisecond, "pause before each timed step")
	flagOwner  = flag.String("owner", "podcellbenchrt", "owner label of every container the benchmark makes")
	flagJSON   = flag.String("json", "", "also write the results and raw samples as JSON to this file")
)

// app is a runtime the benchmark starts: an image and the command of a
// minimal HTTP server on $PORT.
type app struct {
	name    string
	image   string
	command []string
}

func apps() []app {
	return []app{
		{"hello", scalertest.HelloImage, nil},
		{"python", "localhost/podcell-runtime:python3.11-debian", []string{"/bin/sh", "-c", "exec python3 -m http.server $PORT"}},
		{"node", "localhost/podcell-runtime:node20-debian", []string{"node", "-e", `require("http").createServer((q, s) => s.end("ok")).listen(process.env.PORT)`}},
	}
}

var tiers = []int{256, scaler.MBPerCore}

// service is one podcell site: an app at a tier, in one of the variants.
type service struct {
	app     app
	tier    int
	variant string // "podcell" (the defaults), "noboost" or "created"
	name    string
	site    string // host:port
	admin   string // its Caddy's admin address
}

type bench struct {
	raw      *scaler.Podman
	sc       *scaler.Scaler // builds bare specs; runs nothing
	caddies  []*harness.Caddy
	services []*service
	samples  map[string][]float64 // "<app>-<tier>/<figure>" → ms
}

// variants of each app and tier; "created" runs in a Caddy of its own.
var variants = []string{"podcell", "noboost", "created"}

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "runtimes:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	raw, err := scaler.NewPodman(ctx, scalertest.URI())
	if err != nil {
		return err
	}
	if err := scalertest.BuildHello(ctx, raw); err != nil {
		return err
	}
	host, err := raw.Host(ctx)
	if err != nil {
		return err
	}
	// The bare start runs on Podman's default network, as a bare Podman
	// start does: the scaler that makes its spec has no network sandbox.
	sc, err := scaler.New(ctx, raw, scaler.Options{Owner: *flagOwner + "-bare", NoNetworkSandbox: true})
	if err != nil {
		return err
	}
	defer sc.Close(context.WithoutCancel(ctx))
	dir, err := os.MkdirTemp("", "podcell-bench-runtimes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := *flagCaddy
	if bin == "" {
		harness.Logf("building Caddy")
		if bin, err = harness.BuildCaddy(ctx, dir); err != nil {
			return err
		}
	}
	b := &bench{raw: raw, sc: sc, samples: map[string][]float64{}}
	for _, a := range apps() {
		for _, t := range tiers {
			for _, v := range variants {
				s := &service{app: a, tier: t, variant: v, name: fmt.Sprintf("%s-%d", a.name, t)}
				if v != "podcell" {
					s.name += "-" + v
				}
				b.services = append(b.services, s)
			}
		}
	}
	ports, err := harness.FreePorts(len(b.services) + 2)
	if err != nil {
		return err
	}
	admins := map[bool]string{false: fmt.Sprintf("127.0.0.1:%d", ports[0]), true: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	for i, s := range b.services {
		s.site = fmt.Sprintf("127.0.0.1:%d", ports[i+2])
		s.admin = admins[s.variant == "created"]
	}
	for _, created := range []bool{false, true} {
		cdir := filepath.Join(dir, fmt.Sprintf("caddy-%t", created))
		if err := os.MkdirAll(cdir, 0o700); err != nil {
			return err
		}
		c, err := harness.StartCaddy(bin, cdir, admins[created], b.caddyfile(admins[created], created))
		if err != nil {
			return err
		}
		defer c.Stop()
		b.caddies = append(b.caddies, c)
	}

	// Warm-up: one of each, unrecorded (page cache, image layers).
	for _, s := range b.services {
		if err := b.podcellCold(ctx, s, false); err != nil {
			return fmt.Errorf("warm-up %s: %w", s.name, err)
		}
		if s.variant == "podcell" {
			if err := b.bareStart(ctx, s, false); err != nil {
				return fmt.Errorf("warm-up bare %s: %w", s.name, err)
			}
		}
	}
	quota, err := b.quotaAfterReady(ctx)
	if err != nil {
		return err
	}
	for i := 0; i < *flagN; i++ {
		for k, s := range rotate(b.services, i) {
			steps := []func() error{func() error { return b.podcellCold(ctx, s, true) }}
			if s.variant == "podcell" {
				steps = append(steps, func() error { return b.bareStart(ctx, s, true) })
			}
			if (i+k)%2 == 1 {
				steps[0], steps[len(steps)-1] = steps[len(steps)-1], steps[0]
			}
			for _, step := range steps {
				if err := step(); err != nil {
					return fmt.Errorf("round %d, %s: %w", i+1, s.name, err)
				}
			}
		}
		harness.Logf("round %d/%d done (load %s)", i+1, *flagN, mach.Loadavg())
	}
	rep := b.report(host, quota)
	fmt.Print(rep)
	if *flagJSON != "" {
		data, _ := json.MarshalIndent(map[string]any{"samples_ms": b.samples, "quota_after_ready": quota, "n": *flagN}, "", "  ")
		if err := os.WriteFile(*flagJSON, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func rotate(s []*service, i int) []*service {
	i %= len(s)
	return append(append([]*service{}, s[i:]...), s[:i]...)
}

// caddyfile is the config of the Caddy at admin: the services of the
// created variant, or all the others.
func (b *bench) caddyfile(admin string, created bool) string {
	var c strings.Builder
	owner, standby := *flagOwner, "initialized"
	if created {
		owner, standby = *flagOwner+"-created", "created"
	}
	fmt.Fprintf(&c, "{\n\tadmin %s\n\tauto_https off\n\tpodcell {\n\t\towner %s\n\t\tstandby %s\n\t}\n}\n", admin, owner, standby)
	for _, s := range b.services {
		if (s.variant == "created") != created {
			continue
		}
		fmt.Fprintf(&c, "\nhttp://%s {\n\tpodcell %s {\n\t\timage %s\n", s.site, s.name, s.app.image)
		if len(s.app.command) > 0 {
			q := make([]string, len(s.app.command))
			for i, a := range s.app.command {
				q[i] = "`" + a + "`"
			}
			fmt.Fprintf(&c, "\t\tcommand %s\n", strings.Join(q, " "))
		}
		fmt.Fprintf(&c, "\t\tmemory %dMB\n\t\tmax_instances 1\n\t\tpause_after off\n\t\tidle_timeout %s\n", s.tier, idleTimeout)
		if s.variant == "noboost" {
			c.WriteString("\t\tstartup_cpu off\n")
		}
		c.WriteString("\t}\n}\n")
	}
	return c.String()
}

// status is the part of GET /podcell/services/<name> the benchmark reads.
type status struct {
	States    map[string]int `json:"states"`
	Instances []struct {
		ID    string `json:"ID"`
		State string `json:"State"`
	} `json:"instances"`
}

// waitZero waits until the service has no instance up and a standby
// (prepared as its variant says), then the settle pause. A service never used has no standby
// (the scaler keeps one only for services in use): with standby false,
// no instance at all will do.
func (b *bench) waitZero(ctx context.Context, s *service, standby bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var st status
		resp, err := http.Get("http://" + s.admin + "/podcell/services/" + s.name)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && len(st.Instances) == 1 && st.Instances[0].State == "standby" && st.Instances[0].ID != "" {
			break
		}
		if err == nil && !standby && len(st.Instances) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not come back to zero with a standby: %+v %v\n%s", s.name, st, err, b.caddies[0].Tail(20)+b.caddies[1].Tail(20))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return sleep(ctx, *flagSettle)
}

var client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}

// podcellCold times one GET / through Caddy at zero until its 200.
func (b *bench) podcellCold(ctx context.Context, s *service, record bool) error {
	if err := b.waitZero(ctx, s, record); err != nil {
		return err
	}
	t0 := time.Now()
	resp, err := client.Get("http://" + s.site + "/")
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(t0)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Podcell-Cold-Start") == "" {
		return fmt.Errorf("GET through Caddy at zero: %d, cold-start header %q", resp.StatusCode, resp.Header.Get("Podcell-Cold-Start"))
	}
	if record {
		fig := s.variant
		b.add(s, fig, took)
	}
	return nil
}

// bareStart times a bare Podman start of the same image and command at one
// core of quota and no memory limit.
func (b *bench) bareStart(ctx context.Context, s *service, record bool) error {
	cfg := scaler.ServiceConfig{Name: "bare-" + s.name, Image: s.app.image, Command: s.app.command, Port: port, MemoryMB: s.tier}.WithDefaults()
	cs, err := b.sc.ContainerSpec(cfg)
	if err != nil {
		return err
	}
	cs.Limits.CPUQuota, cs.Limits.StartCPUQuota = cs.Limits.CPUPeriod, 0
	cs.Limits.MemoryMB = scaler.MaxMemoryMB // no limit these apps come near
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	id, err := b.raw.Create(actx, cs)
	if err != nil {
		return err
	}
	defer b.raw.Remove(context.WithoutCancel(ctx), id)
	if err := sleep(ctx, *flagSettle); err != nil {
		return err
	}
	t0 := time.Now()
	if err := b.raw.Start(actx, id); err != nil {
		return err
	}
	info, err := b.raw.Inspect(actx, id)
	if err != nil {
		return err
	}
	for {
		resp, err := client.Get("http://" + info.Addr + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(t0) > 30*time.Second {
			return fmt.Errorf("bare %s: no 200 within 30s: %v", s.name, err)
		}
		time.Sleep(time.Millisecond)
	}
	if record {
		b.add(s, "bare", time.Since(t0))
	}
	return nil
}

// quotaAfterReady reads the CPU quota inside a ready 256 MB hello instance.
func (b *bench) quotaAfterReady(ctx context.Context) (string, error) {
	for _, s := range b.services {
		if s.app.name == "hello" && s.tier == 256 && s.variant == "podcell" {
			if err := b.waitZero(ctx, s, true); err != nil {
				return "", err
			}
			resp, err := client.Get("http://" + s.site + "/limits")
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			var lim map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&lim); err != nil {
				return "", err
			}
			return lim["cpu"], nil
		}
	}
	return "", fmt.Errorf("no hello-256 service")
}

func (b *bench) add(s *service, fig string, d time.Duration) {
	k := fmt.Sprintf("%s-%d/%s", s.app.name, s.tier, fig)
	b.samples[k] = append(b.samples[k], float64(d)/float64(time.Millisecond))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return mach.Percentile(s, 50)
}

func (b *bench) report(h scaler.HostInfo, quota string) string {
	var r strings.Builder
	fmt.Fprintf(&r, "# Cold start of real runtimes through podcell\n\n")
	fmt.Fprintf(&r, "%s; Podman %s (%s, cgroup %s, %d CPUs); %d samples of each figure, interleaved; settle %s; load after: %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), h.Version, mach.RootMode(h), h.CgroupVersion, h.CPUs, *flagN, *flagSettle, mach.Loadavg())
	r.WriteString("Medians in ms. bare: Podman API start of the same image and command at 1 core, no other limit (Start → first 200). podcell: first request at zero through Caddy → its 200, with the defaults: startup boost on, standby initialized. no boost: `startup_cpu off`. created standby: `standby created` (a second Caddy).\n\n")
	r.WriteString("| app | tier | bare | podcell | podcell / bare | no boost | no boost / bare | created standby | created / bare | target |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, a := range apps() {
		for _, t := range tiers {
			k := fmt.Sprintf("%s-%d/", a.name, t)
			bare, pc, nb, cr := median(b.samples[k+"bare"]), median(b.samples[k+"podcell"]), median(b.samples[k+"noboost"]), median(b.samples[k+"created"])
			ok := pc/bare <= ratioTarget
			target := fmt.Sprintf("≤ %.1f× bare: %s", ratioTarget, yes(ok))
			if a.name == "python" {
				target += fmt.Sprintf("; ≤ %.0f ms: %s", pythonMaxMS, yes(pc <= pythonMaxMS))
			}
			fmt.Fprintf(&r, "| %s | %d MB | %.0f | %.0f | %.2f | %.0f | %.2f | %.0f | %.2f | %s |\n", a.name, t, bare, pc, pc/bare, nb, nb/bare, cr, cr/bare, target)
		}
	}
	fmt.Fprintf(&r, "\nCPU quota/period inside a ready 256 MB hello instance (GET /limits): `%s` (the tier's is `%d %d`).\n",
		quota, 256*100000/scaler.MBPerCore, 100000)
	return r.String()
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
