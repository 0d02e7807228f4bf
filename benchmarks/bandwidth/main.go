// Command bandwidth measures the network rate of podcell instances through
// Caddy against the rate each tier is configured for, and the rate of the
// same app without shaping, in one run, interleaved round by round.
//
//	256 MB      a podcell service at 256 MB: bandwidth_per_core (200 Mbit/s)
//	            x 256/1769 core = 28.9 Mbit/s each way
//	1769 MB     a podcell service at 1769 MB: 200 Mbit/s each way
//	unshaped    a plain reverse_proxy in the same Caddy to a bare container
//	            of the 1769 MB spec on Podman's default network, no qdisc
//
// Each round downloads (GET /blob?mb=N, the hello image answering N MiB)
// and uploads (POST /sink with N MiB) through Caddy once per target. The
// rate is the bytes moved over the time from sending the request to reading
// the whole answer. It prints a markdown report on stdout (progress on
// stderr) and, with -json FILE, every sample as JSON. It needs root (the
// rootful Podman API) and builds Caddy and the hello image.
//
// Run from the repository root:
//
//	GOFLAGS=-tags=containers_image_openpgp CGO_ENABLED=0 go run ./benchmarks/bandwidth -n 5
package main

import (
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
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/podcell/podcell/benchmarks/harness"
	mach "github.com/podcell/podcell/benchmarks/machine"
	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

var (
	flagN       = flag.Int("n", 5, "rounds; each downloads and uploads once per target")
	flagJSON    = flag.String("json", "", "also write the results as JSON to this file")
	flagOwner   = flag.String("owner", "podcellbench-bw", "owner label of every container and network the benchmark makes; all are removed at start and end")
	flagPerCore = flag.Int("per-core", scaler.DefaultBandwidthPerCoreMbit, "bandwidth_per_core in Mbit/s")
	flagSeconds = flag.Float64("seconds", 8, "how long one transfer should take at the configured rate (sets its size)")
)

const tolerance = 0.20 // measured rate within ±20 % of the configured one

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "bandwidth: "+format+"\n", args...) }

// target is one route through Caddy.
type target struct {
	Name       string  `json:"name"`
	MemoryMB   int     `json:"memory_mb"`
	ConfigMbit float64 `json:"configured_mbit"` // 0: unshaped
	MiB        int     `json:"mib"`             // per transfer
	addr       string  // Caddy's listener for it
}

type Result struct {
	Target     string    `json:"target"`
	Direction  string    `json:"direction"`
	ConfigMbit float64   `json:"configured_mbit"`
	MiB        int       `json:"mib"`
	Mbit       []float64 `json:"samples_mbit"`
	Median     float64   `json:"median_mbit"`
	Min        float64   `json:"min_mbit"`
	Max        float64   `json:"max_mbit"`
	Ratio      float64   `json:"median_over_configured,omitempty"`
	Within     bool      `json:"within_20_percent"`
}

type Report struct {
	Date, OS, Kernel, Podman, Go, LoadBefore, LoadAfter, Duration string
	CPUs                                                          int
	PerCoreMbit                                                   int
	Results                                                       []Result
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

func bareOwner() string { return *flagOwner + "-bare" }

// cleanup removes every container and network with the owner label.
func cleanup(ctx context.Context, rt *scaler.Podman, owner string) error {
	var errs []error
	list, err := rt.List(ctx, scaler.LabelOwner, owner)
	if err != nil {
		return err
	}
	for _, c := range list {
		errs = append(errs, rt.Remove(ctx, c.ID))
	}
	nets, err := rt.ListNetworks(ctx)
	if err != nil {
		return err
	}
	for _, n := range nets {
		if n.Labels[scaler.LabelOwner] == owner {
			errs = append(errs, rt.RemoveNetwork(ctx, n.Name))
		}
	}
	return errors.Join(errs...)
}

func run(ctx context.Context) error {
	rt, err := scaler.NewPodman(ctx, scalertest.URI())
	if err != nil {
		return err
	}
	host, err := rt.Host(ctx)
	if err != nil {
		return err
	}
	if host.Rootless {
		return errors.New("this benchmark needs rootful Podman: rootless instances are shaped on their loopback, see docs/configuration.md")
	}
	if err := scalertest.BuildHello(ctx, rt); err != nil {
		return err
	}
	for _, o := range []string{*flagOwner, bareOwner()} {
		if err := cleanup(ctx, rt, o); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "podcell-bw-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The unshaped baseline: a bare container with an instance's spec, on
	// Podman's default network. Another owner: podcell in Caddy would
	// remove a container of its own owner that no service of its config has.
	sc, err := scaler.New(ctx, rt, scaler.Options{Owner: bareOwner(), NoNetworkSandbox: true})
	if err != nil {
		return err
	}
	cs, err := sc.ContainerSpec(scaler.ServiceConfig{Name: "bare", Image: scalertest.HelloImage, Port: 8080, MemoryMB: 1769})
	sc.Close(ctx)
	if err != nil {
		return err
	}
	id, err := rt.Create(ctx, cs)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		for _, o := range []string{*flagOwner, bareOwner()} {
			if err := cleanup(cctx, rt, o); err != nil {
				logf("cleanup: %v", err)
			}
		}
	}()
	if err := rt.Start(ctx, id); err != nil {
		return err
	}
	info, err := rt.Inspect(ctx, id)
	if err != nil {
		return err
	}

	logf("building caddy")
	bin := filepath.Join(dir, "caddy")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/caddy")
	build.Dir = scalertest.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	ports, err := harness.FreePorts(4)
	if err != nil {
		return err
	}
	per := float64(*flagPerCore)
	targets := []*target{
		{Name: "256 MB", MemoryMB: 256, ConfigMbit: per * 256 / scaler.MBPerCore},
		{Name: "1769 MB", MemoryMB: 1769, ConfigMbit: per},
		{Name: "unshaped", MemoryMB: 1769},
	}
	var cf strings.Builder
	fmt.Fprintf(&cf, "{\n\tadmin 127.0.0.1:%d\n\tauto_https off\n\tpodcell {\n\t\towner %s\n\t\tdata_dir %s\n\t\tbandwidth_per_core %dMbit\n\t}\n}\n",
		ports[0], *flagOwner, filepath.Join(dir, "data"), *flagPerCore)
	for i, t := range targets {
		t.addr = fmt.Sprintf("127.0.0.1:%d", ports[i+1])
		rate := t.ConfigMbit
		if rate == 0 {
			rate = 1000 // the size of an unshaped transfer
			fmt.Fprintf(&cf, "http://%s {\n\treverse_proxy %s\n}\n", t.addr, info.Addr)
		} else {
			fmt.Fprintf(&cf, "http://%s {\n\tpodcell bw%d {\n\t\timage %s\n\t\tmemory %dMB\n\t\tmin_instances 1\n\t\tmax_instances 1\n\t\tpause_after off\n\t}\n}\n",
				t.addr, t.MemoryMB, scalertest.HelloImage, t.MemoryMB)
		}
		t.MiB = max(8, int(rate*1e6/8**flagSeconds)>>20)
	}
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(cf.String()), 0o644); err != nil {
		return err
	}
	caddy := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	caddy.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	logFile, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		return err
	}
	caddy.Stdout, caddy.Stderr = logFile, logFile
	if err := caddy.Start(); err != nil {
		return err
	}
	defer func() {
		caddy.Process.Signal(os.Interrupt) // podcell removes its instances and networks
		caddy.Wait()
	}()
	// Each route answers once its instance is up (min_instances 1).
	for _, t := range targets {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			resp, err := http.Get("http://" + t.addr + "/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(logFile.Name())
				return fmt.Errorf("%s did not answer 200 through caddy within 2m:\n%s", t.Name, log)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	rep := Report{Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), OS: mach.OSName(), Kernel: mach.ReadTrim("/proc/sys/kernel/osrelease"),
		Podman: host.Version, Go: runtime.Version(), CPUs: host.CPUs, PerCoreMbit: *flagPerCore, LoadBefore: mach.Loadavg()}
	samples := map[string][]float64{}
	began := time.Now()
	for round := 0; round < *flagN; round++ {
		order := targets
		if round%2 == 1 { // alternate the order, so load drifts hit every target alike
			order = []*target{targets[2], targets[1], targets[0]}
		}
		for _, t := range order {
			for _, dir := range []string{"download", "upload"} {
				mbit, err := transfer(ctx, t, dir)
				if err != nil {
					return fmt.Errorf("round %d, %s %s: %w", round+1, t.Name, dir, err)
				}
				samples[t.Name+"|"+dir] = append(samples[t.Name+"|"+dir], mbit)
				logf("round %d/%d: %s %s %.1f Mbit/s (%d MiB)", round+1, *flagN, t.Name, dir, mbit, t.MiB)
			}
		}
	}
	rep.Duration = time.Since(began).Round(time.Second).String()
	rep.LoadAfter = mach.Loadavg()
	for _, t := range targets {
		for _, dir := range []string{"download", "upload"} {
			xs := append([]float64(nil), samples[t.Name+"|"+dir]...)
			sort.Float64s(xs)
			r := Result{Target: t.Name, Direction: dir, ConfigMbit: t.ConfigMbit, MiB: t.MiB, Mbit: samples[t.Name+"|"+dir],
				Median: mach.Percentile(xs, 50), Min: xs[0], Max: xs[len(xs)-1]}
			if t.ConfigMbit > 0 {
				r.Ratio = r.Median / t.ConfigMbit
				r.Within = r.Min >= t.ConfigMbit*(1-tolerance) && r.Max <= t.ConfigMbit*(1+tolerance)
			}
			rep.Results = append(rep.Results, r)
		}
	}
	fmt.Print(rep.markdown())
	if *flagJSON != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(*flagJSON, append(data, '\n'), 0o644)
	}
	return nil
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// transfer moves t.MiB through Caddy in one direction and returns the rate
// in Mbit/s.
func transfer(ctx context.Context, t *target, dir string) (float64, error) {
	n := int64(t.MiB) << 20
	var req *http.Request
	var err error
	if dir == "download" {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/blob?mb=%d", t.addr, t.MiB), nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, "http://"+t.addr+"/sink", io.LimitReader(zeros{}, n))
		req.ContentLength = n
	}
	if err != nil {
		return 0, err
	}
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	got, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	if dir == "download" && got != n {
		return 0, fmt.Errorf("downloaded %d bytes, want %d", got, n)
	}
	return float64(n) * 8 / took.Seconds() / 1e6, nil
}

func (r Report) markdown() string {
	var s strings.Builder
	fmt.Fprintf(&s, "## Instance bandwidth through Caddy, %s\n\n", r.Date)
	fmt.Fprintf(&s, "Machine: %s, kernel %s, %d CPUs, podman %s rootful, %s.  \n", r.OS, r.Kernel, r.CPUs, r.Podman, r.Go)
	fmt.Fprintf(&s, "bandwidth_per_core %d Mbit/s; %d rounds, targets interleaved (order reversed every other round); load average %s before, %s after; %s.\n\n",
		r.PerCoreMbit, len(r.Results[0].Mbit), r.LoadBefore, r.LoadAfter, r.Duration)
	s.WriteString("| target | direction | configured | MiB per transfer | median | min | max | median / configured | every sample within ±20 % |\n|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, x := range r.Results {
		conf, ratio, within := "unshaped", "", ""
		if x.ConfigMbit > 0 {
			conf = fmt.Sprintf("%.1f Mbit/s", x.ConfigMbit)
			ratio = fmt.Sprintf("%.3f", x.Ratio)
			within = "no"
			if x.Within {
				within = "yes"
			}
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %d | %.1f Mbit/s | %.1f | %.1f | %s | %s |\n", x.Target, x.Direction, conf, x.MiB, x.Median, x.Min, x.Max, ratio, within)
	}
	return s.String()
}
