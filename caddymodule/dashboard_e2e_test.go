package caddymodule_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/podcell/podcell/scaler"
)

// chromium is the browser of Debian's package, which CI installs (.ci/run).
const chromium = "/usr/bin/chromium"

// browserOrigins lets a browser open the dashboard by its URL: Caddy
// refuses a browser's request that names no origin (a typed URL or a
// bookmark sends neither Origin nor Referer) unless "" is an allowed origin.
// docs/configuration.md tells users the same.
const browserOrigins = `origins "" {admin}`

// dashboardPage is the dashboard open in a headless Chromium.
type dashboardPage struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

// openDashboard opens c's dashboard by its URL, as a user does. Every
// console message, uncaught exception and answer of 400 or more the page
// gets from then on is a problem that check reports: a script error, or a
// request Caddy's checks refused.
func openDashboard(t *testing.T, c *caddyProc) *dashboardPage {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing; CI must install Debian's chromium package (.ci/run does)", chromium)
		}
		t.Skipf("%s is missing: apt-get install chromium to run the browser tests", chromium)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	// Before Caddy stops (cleanups run last first), so the page sees no
	// error from a stopped admin API.
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	p := &dashboardPage{t: t, ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		var problem string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			problem = "exception at " + d.URL + ": " + d.Text
			if d.Exception != nil {
				problem += " " + d.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				problem = "console." + string(ev.Type) + ":"
				for _, a := range ev.Args {
					problem += " " + string(a.Value) + a.Description
				}
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
				problem = "browser log " + string(ev.Entry.Level) + ": " + ev.Entry.Text + " " + ev.Entry.URL
			}
		case *network.EventResponseReceived:
			if ev.Response.Status >= 400 {
				problem = fmt.Sprintf("%s answered %d", ev.Response.URL, ev.Response.Status)
			}
		}
		if problem != "" {
			p.mu.Lock()
			p.problems = append(p.problems, problem)
			p.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// The URL as a user types it: the browser sends no Origin or Referer.
	url := "http://" + c.admin + "/podcell/dashboard/"
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("open %s: %d", url, resp.Status)
	}
	return p
}

// waitFor polls a JavaScript expression in the page until it is true.
func (p *dashboardPage) waitFor(what, expr string, timeout time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout+5*time.Second)
	defer cancel()
	poll := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout))
	if _, err := chromedp.Run(ctx, poll); err != nil {
		text, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body.innerText`))
		p.check()
		p.t.Fatalf("the page did not show %s within %s: %v\nit shows:\n%s", what, timeout, err, text)
	}
}

// check fails the test for each problem the page had, and that its status
// line does not say it reads the admin API.
func (p *dashboardPage) check() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, problem := range p.problems {
		p.t.Errorf("the page: %s", problem)
	}
	p.problems = nil
	status, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.getElementById('status').textContent`))
	if err != nil || !strings.HasPrefix(status, "live") {
		p.t.Errorf("the page's status line says %q (%v)", status, err)
	}
}

func TestDashboardShowsScaleFromZero(t *testing.T) {
	e2e(t)
	t0 := time.Now()
	c := startCaddy(t, `
http://{http} {
	podcell hello {
		image {image}
		min_instances 0
		pause_after off
		idle_timeout 5m
	}
}`, withGlobal("dashboard"), withAdmin(browserOrigins))
	started := time.Since(t0)
	p := openDashboard(t, c)
	row := `document.querySelector('#services tr[data-service="hello"]')`
	p.waitFor("hello at zero instances", row+`?.dataset.up === "0" && `+row+`.dataset.ready === "0"`, 15*time.Second)
	if n := c.containers(scaler.StateRunning, scaler.StatePaused); n != 0 {
		t.Fatalf("%d containers run before the first request", n)
	}
	// Let the page keep a few samples at zero, so the charts start flat.
	time.Sleep(3 * time.Second)

	// The first request starts an instance; a steady trickle after it
	// keeps one up.
	t1 := time.Now()
	first := c.get("/")
	if first.code != 200 || first.header.Get("Podcell-Cold-Start") == "" {
		t.Fatalf("first request: %d %v, Podcell-Cold-Start %q; want 200 from a cold start", first.code, first.err, first.header.Get("Podcell-Cold-Start"))
	}
	stop := make(chan struct{})
	var load sync.WaitGroup
	load.Add(1)
	go func() {
		defer load.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				c.get("/")
			}
		}
	}()
	defer func() { close(stop); load.Wait() }()

	p.waitFor("a ready instance", row+`.dataset.ready >= 1`, 15*time.Second)
	p.waitFor("the cold start counted", row+`.dataset.coldStarts >= 1 && Number(document.getElementById('cold-count').textContent) >= 1`, 10*time.Second)
	p.waitFor("the cold start in its chart", `document.getElementById('chart-cold').dataset.total >= 1`, 10*time.Second)
	p.waitFor("the instance as ready", `document.querySelector('#instances tr[data-state="ready"]') !== null`, 5*time.Second)
	// Its network and rate, in the status JSON and on the page: 256 MB
	// at the default 200 Mbit/s per core is 28.9 Mbit/s.
	var st struct {
		Instances []scaler.InstanceSnapshot `json:"instances"`
	}
	c.adminJSON("GET", "/podcell/services/hello", &st)
	netShown := false
	for _, i := range st.Instances {
		if i.State == "ready" {
			netShown = i.Net.Network == c.owner+"-hello" && fmt.Sprintf("%.1f", i.Net.RateMbit) == "28.9" && strings.Contains(i.Net.Shaping, "tbf")
			if !netShown {
				t.Errorf("ready instance's network in GET /podcell/services/hello: %+v, want %s-hello at 28.9 Mbit/s shaped by tbf", i.Net, c.owner)
			}
		}
	}
	if !netShown {
		t.Errorf("GET /podcell/services/hello lists no ready instance with its network: %+v", st.Instances)
	}
	p.waitFor("the instance's network and rate", `document.querySelector('#instances tr[data-state="ready"]').textContent.includes('-hello, 28.9 Mbit/s')`, 5*time.Second)
	p.waitFor("the app's output in the live log", `document.getElementById('log').textContent.includes('hello listening on')`, 10*time.Second)
	shown := time.Since(t1)

	// The instance exits on its own: the page lists the crash, the log
	// follows the app's last line, and the trickle starts another instance.
	c.get("/exit?code=3")
	p.waitFor("the crash in the recent errors", `document.querySelector('#errors li[data-kind="crash"]') !== null`, 15*time.Second)
	p.waitFor("the app's last line in the live log", `document.getElementById('log').textContent.includes('exit requested with code 3')`, 10*time.Second)
	p.waitFor("a second cold start", row+`.dataset.coldStarts >= 2 && `+row+`.dataset.ready >= 1`, 20*time.Second)
	p.waitFor("the requests counted", row+`.dataset.requests >= 2`, 10*time.Second)

	// A 5xx answer shows in the service's 5xx column and in the errors.
	if r := c.get("/status?code=500"); r.code != 500 {
		t.Fatalf("/status?code=500: %d %v", r.code, r.err)
	}
	p.waitFor("the 5xx counted", row+`.dataset.errors >= 1`, 10*time.Second)
	p.waitFor("the 5xx in the recent errors", `document.querySelector('#errors li[data-kind="http_5xx"]') !== null`, 10*time.Second)

	// A few more samples under load, so the screenshot has a curve.
	time.Sleep(6 * time.Second)
	img, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if path := os.Getenv("PODCELL_SCREENSHOT"); path != "" {
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s", path)
	}
	p.check()
	t.Logf("caddy up in %s; the page showed the scale from zero %s after the first request; %s in all",
		started.Round(time.Millisecond), shown.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

func TestDashboardShowsBuildLog(t *testing.T) {
	e2e(t)
	c, _ := startPyApp(t, withGlobal("dashboard"), withAdmin(browserOrigins))
	p := openDashboard(t, c)
	// The page follows the newest build's log while it runs, to its end.
	p.waitFor("the first build's log to its end", `document.getElementById('build-log').textContent.includes('[build 1 succeeded]')`, 3*time.Minute)
	p.waitFor("the build as succeeded", `document.querySelector('#builds tr[data-build="1"] .badge.succeeded') !== null`, 10*time.Second)
	p.check()
}

func TestDashboardOffByDefault(t *testing.T) {
	e2e(t)
	c := startCaddy(t, `
http://{http} {
	podcell hello {
		image {image}
	}
}`)
	code, body := c.adminDo("GET", "/podcell/dashboard/", "")
	if code != http.StatusNotFound || !strings.Contains(body, `podcell global option \"dashboard\"`) {
		t.Errorf("dashboard off: %d %s; want 404 naming the option", code, body)
	}
	// Why the docs and the tests above allow the origin "": Caddy refuses
	// a browser's request that carries neither Origin nor Referer, as a
	// typed URL does. If that changes, so can the docs.
	req, _ := http.NewRequest("GET", "http://"+c.admin+"/podcell/dashboard/", nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a browser's navigation without the origin \"\" allowed: %d, want Caddy's 403", resp.StatusCode)
	}
}
