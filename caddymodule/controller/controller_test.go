package controller

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podcell/podcell/caddymodule/cron"
	"github.com/podcell/podcell/caddymodule/internal/fakebuild"
	"github.com/podcell/podcell/caddymodule/store"
	"github.com/podcell/podcell/scaler"
	"github.com/podcell/podcell/scaler/scalertest"
)

// newTest is a started controller on a fake runtime and a fresh data dir,
// with config declaring the config's services.
func newTest(t *testing.T, b Builder, config ...Declared) (*Controller, *scalertest.Fake) {
	t.Helper()
	return openTest(t, t.TempDir(), b, config...)
}

func openTest(t testing.TB, dir string, b Builder, config ...Declared) (*Controller, *scalertest.Fake) {
	t.Helper()
	key, err := store.LoadKey(store.KeySource{}, dir, filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	rt := scalertest.NewFake(t)
	rt.SetAutoReady(true)
	rt.SetHTTP(echo)
	c, err := New(Options{DataDir: dir, Key: key, Runtime: rt, Scaler: scaler.Options{Owner: "ctltest"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	if err := c.Start(Settings{Builder: b, KeepImages: DefaultKeepImages}, config); err != nil {
		t.Fatal(err)
	}
	return c, rt
}

func image(name, img string, env map[string]string) Declared {
	return Declared{Name: name, Spec: ServiceSpec{Image: img, Env: env}}
}

// echo is the app of the fake runtime's instances: it answers with the
// request it got.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "uri": r.RequestURI, "header": r.Header})
})

// running is the number of containers started.
func running(f *scalertest.Fake) int { return len(f.StartedIDs()) }

// config is the scaler's config of a service (fatal if it does not run).
func config(t *testing.T, c *Controller, name string) scaler.ServiceConfig {
	t.Helper()
	svc := c.Scaler().Service(name)
	if svc == nil {
		t.Fatalf("service %s does not run", name)
	}
	return svc.Config()
}

// code is the HTTP status an operation's error carries (0: no error).
func code(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return -1
	}
	return 0
}

func wantCode(t *testing.T, what string, err error, want int, says string) {
	t.Helper()
	if code(err) != want || err != nil && !strings.Contains(err.Error(), says) {
		t.Errorf("%s: %v (status %d), want %d naming %q", what, err, code(err), want, says)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Reconcile joins the declared spec, the stored env, the cron secret and
// the image into what the scaler runs; the config's env wins.
func TestReconcileJoinsDeclarationAndStore(t *testing.T) {
	c, _ := newTest(t, nil, image("web", "localhost/web:1", map[string]string{"MODE": "config"}))
	cfg := config(t, c, "web")
	secret, _ := c.Store().CronSecret("web")
	if cfg.Image != "localhost/web:1" || cfg.Env["MODE"] != "config" || cfg.Env[CronSecretEnv] != secret || len(secret) != 64 {
		t.Fatalf("runs %s with env %v", cfg.Image, cfg.Env)
	}
	list, err := c.SetEnv("web", map[string]*string{"TOKEN": ptr("t1")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := config(t, c, "web"); cfg.Env["TOKEN"] != "t1" || cfg.Env["MODE"] != "config" {
		t.Errorf("after SetEnv the service runs env %v", cfg.Env)
	}
	revs, _ := c.Revisions("web")
	if len(revs) != 2 || revs[0].Reason != "env" || !revs[0].Current || list.Revision != revs[0].Seq {
		t.Errorf("revisions %+v after an env change (list says revision %d)", revs, list.Revision)
	}
	// The config's env wins; a change of it is refused, naming the config.
	_, err = c.SetEnv("web", map[string]*string{"MODE": ptr("api")})
	wantCode(t, "set a config env var", err, http.StatusConflict, "Caddyfile")
	_, err = c.SetEnv("web", map[string]*string{"NOPE": nil})
	wantCode(t, "unset a var never set", err, http.StatusNotFound, "NOPE")
	for k, says := range map[string]string{"PORT": "port", CronSecretEnv: "cron secret", "2X": `"2X"`} {
		_, err = c.SetEnv("web", map[string]*string{k: ptr("1")})
		wantCode(t, "set "+k, err, http.StatusBadRequest, says)
	}
	_, err = c.SetEnv("web", map[string]*string{"BIG": ptr(strings.Repeat("x", MaxEnvValue+1))})
	wantCode(t, "a value too big", err, http.StatusRequestEntityTooLarge, "env BIG")
	_, err = c.SetEnv("nosuch", map[string]*string{"A": ptr("1")})
	wantCode(t, "env of a service nobody declared", err, http.StatusNotFound, `"nosuch"`)
	env, err := c.Env("web", false)
	if err != nil || len(env.Env) != 2 || env.Env[0].Value != "" || env.Env[0].Source != "config" || env.Env[1].Source != "api" {
		t.Errorf("env list %+v, %v: want MODE (config) and TOKEN (api), no values", env, err)
	}
	if cfg := config(t, c, "web"); cfg.Env["TOKEN"] != "t1" || cfg.Env["MODE"] != "config" {
		t.Errorf("refused changes changed the env: %v", cfg.Env)
	}
}

func ptr(s string) *string { return &s }

// A service the API declares is stored and runs; the config's services
// are out of its reach; a delete removes it and what the store held.
func TestPutAndDelete(t *testing.T) {
	c, _ := newTest(t, nil, image("cfg", "localhost/cfg:1", nil))
	spec := ServiceSpec{Image: "localhost/api:1", Env: map[string]string{"A": "1"},
		Cron: []cron.Job{{Name: "tick", Schedule: "@hourly", Path: "/tick"}}}
	st, created, err := c.Put("api", spec)
	if err != nil || !created || st.Source != "api" || st.Name != "api" {
		t.Fatalf("put: %+v created=%v %v", st, created, err)
	}
	if cfg := config(t, c, "api"); cfg.Image != "localhost/api:1" || cfg.Env["A"] != "1" {
		t.Errorf("runs %s env %v", cfg.Image, cfg.Env)
	}
	if jobs, err := c.CronJobs("api"); err != nil || len(jobs) != 1 || jobs[0].Name != "tick" || jobs[0].Source != "api" || jobs[0].Next == nil {
		t.Errorf("cron jobs %+v, %v", jobs, err)
	}
	if _, created, err := c.Put("api", spec); err != nil || created {
		t.Errorf("put again: created=%v %v, want a change", created, err)
	}
	if c.Route("api") == nil || c.Route("cfg") == nil {
		t.Errorf("routes: api %v, cfg %v", c.Route("api"), c.Route("cfg"))
	}

	_, _, err = c.Put("cfg", ServiceSpec{Image: "x"})
	wantCode(t, "put over a config service", err, http.StatusConflict, "Caddyfile")
	wantCode(t, "delete a config service", c.Delete("cfg"), http.StatusConflict, "Caddyfile")
	wantCode(t, "delete nothing", c.Delete("nosuch"), http.StatusNotFound, `"nosuch"`)
	for _, bad := range []struct {
		name string
		spec ServiceSpec
		says string
	}{
		{"Bad_Name", ServiceSpec{Image: "x"}, `"Bad_Name"`},
		{"new", ServiceSpec{Image: "x", MemoryMB: 50}, "memory"},
		{"new", ServiceSpec{MemoryMB: 256}, "image"},
		{"new", ServiceSpec{Image: "x", Env: map[string]string{"2X": "y"}}, `"2X"`},
		{"new", ServiceSpec{Image: "x", Git: &GitSource{URL: "https://example.com/a", Runtime: "python3.11-debian"}}, "not both"},
		{"new", ServiceSpec{Git: &GitSource{URL: "https://example.com/a", Runtime: "python3.11-debian", BuildMemoryMB: 65536}}, "build_memory"},
		{"new", ServiceSpec{Image: "x", Cron: []cron.Job{{Schedule: "61 * * * *", Path: "/x"}}}, "61"},
	} {
		_, _, err := c.Put(bad.name, bad.spec)
		wantCode(t, "put "+bad.says, err, http.StatusBadRequest, bad.says)
	}
	if _, err := c.Status("new"); code(err) != http.StatusNotFound {
		t.Errorf("a refused service exists: %v", err)
	}

	if err := c.Delete("api"); err != nil {
		t.Fatal(err)
	}
	if c.Route("api") != nil {
		t.Error("a deleted service is still routed")
	}
	if _, err := c.Store().Service("api"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the store still has the deleted service: %v", err)
	}
	if revs, _ := c.Store().Revisions("api"); len(revs) != 0 {
		t.Errorf("the store still has %d revisions of the deleted service", len(revs))
	}
	eventually(t, "the deleted service's instances go", func() bool { return c.Scaler().Service("api") == nil })
}

// Rollback runs an earlier revision's image and API env again; a config
// service cannot roll back to an image the config does not set.
func TestRollback(t *testing.T) {
	c, _ := newTest(t, nil, image("cfg", "localhost/cfg:1", nil))
	if _, _, err := c.Put("api", ServiceSpec{Image: "localhost/api:1", Env: map[string]string{"V": "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetEnv("api", map[string]*string{"V": ptr("2")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Put("api", ServiceSpec{Image: "localhost/api:2"}); err != nil {
		t.Fatal(err)
	}
	if cfg := config(t, c, "api"); cfg.Image != "localhost/api:2" || cfg.Env["V"] != "2" {
		t.Fatalf("before the rollback: %s %v", cfg.Image, cfg.Env)
	}
	// The newest revision that differs: image 1, env V=2.
	if _, err := c.Rollback("api", 0); err != nil {
		t.Fatal(err)
	}
	if cfg := config(t, c, "api"); cfg.Image != "localhost/api:1" || cfg.Env["V"] != "2" {
		t.Errorf("rollback: %s %v, want image 1 with V=2", cfg.Image, cfg.Env)
	}
	if _, err := c.Rollback("api", 1); err != nil {
		t.Fatal(err)
	}
	if cfg := config(t, c, "api"); cfg.Image != "localhost/api:1" || cfg.Env["V"] != "1" {
		t.Errorf("rollback to 1: %s %v, want image 1 with V=1", cfg.Image, cfg.Env)
	}
	revs, _ := c.Revisions("api")
	if revs[0].Reason != "rollback" {
		t.Errorf("newest revision %+v, want a rollback", revs[0])
	}
	// The store holds the rolled-back spec: a restart serves it.
	rec, _ := c.Store().Service("api")
	if spec, _ := DecodeSpec(rec.Spec); spec.Image != "localhost/api:1" || rec.V != store.ServiceFormat {
		t.Errorf("stored spec %s (format %d)", rec.Spec, rec.V)
	}

	_, err := c.Rollback("api", 99)
	wantCode(t, "rollback to a revision never kept", err, http.StatusNotFound, "revision 99")
	_, err = c.Rollback("cfg", 0)
	wantCode(t, "rollback with one revision", err, http.StatusConflict, "no earlier revision")
	c.Store().AddRevision("cfg", store.Revision{ID: "other", Image: "localhost/cfg:0", Reason: "config"})
	c.Store().AddRevision("cfg", store.Revision{ID: "now", Image: "localhost/cfg:1", Reason: "config"})
	_, err = c.Rollback("cfg", 0)
	wantCode(t, "rollback of a config service to another image", err, http.StatusConflict, "change the image in the config")
}

// A config service rolls back its API env (its image is the config's):
// the declared env stays, the stored env comes back, and the store keeps
// no spec for it.
func TestRollbackConfigServiceEnv(t *testing.T) {
	c, _ := newTest(t, nil, image("cfg", "localhost/cfg:1", map[string]string{"D": "declared"}))
	for _, v := range []string{"1", "2"} {
		if _, err := c.SetEnv("cfg", map[string]*string{"V": ptr(v)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Rollback("cfg", 0); err != nil {
		t.Fatal(err)
	}
	if cfg := config(t, c, "cfg"); cfg.Image != "localhost/cfg:1" || cfg.Env["V"] != "1" || cfg.Env["D"] != "declared" {
		t.Errorf("rollback: %s %v, want V=1 and D declared", cfg.Image, cfg.Env)
	}
	if rec, _ := c.Store().Service("cfg"); len(rec.Spec) != 0 || rec.Env["V"] != "1" {
		t.Errorf("stored %+v", rec)
	}
	if revs, _ := c.Revisions("cfg"); revs[0].Reason != "rollback" {
		t.Errorf("newest revision %+v, want a rollback", revs[0])
	}
}

// A reload (Start again) keeps what the API declared, applies the new
// config and removes the services no declaration holds any more.
func TestStartAgainIsAReload(t *testing.T) {
	c, _ := newTest(t, nil, image("a", "localhost/a:1", nil), image("b", "localhost/b:1", nil))
	if _, _, err := c.Put("api", ServiceSpec{Image: "localhost/api:1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(Settings{}, []Declared{image("a", "localhost/a:2", nil)}); err != nil {
		t.Fatal(err)
	}
	if cfg := config(t, c, "a"); cfg.Image != "localhost/a:2" {
		t.Errorf("a runs %s after the reload", cfg.Image)
	}
	config(t, c, "api")
	eventually(t, "b goes with the config that declared it", func() bool { return c.Scaler().Service("b") == nil })
	if c.Route("b") != nil {
		t.Error("b is still routed")
	}
	// The config shadows a stored API service of the same name.
	if err := c.Start(Settings{}, []Declared{image("a", "localhost/a:2", nil), image("api", "localhost/cfg-api:1", nil)}); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status("api"); st.Source != "config" || st.Image != "localhost/cfg-api:1" {
		t.Errorf("api: source %s image %s, want the config's", st.Source, st.Image)
	}
}

// A store written before the controller (testdata/store-v1) opens: its
// records migrate to format 2 and every service, env var, cron job and
// secret, revision, build and run is found.
func TestStoreFromBeforeTheController(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/store-v1")); err != nil {
		t.Fatal(err)
	}
	b := new(fakebuild.Builder)
	b.SetCommit("2222222222222222222222222222222222222222")
	c, _ := openTest(t, dir, b, image("config-svc", "localhost/cfg:1", nil))
	for _, name := range []string{"api-svc", "git-svc", "config-svc"} {
		rec, err := c.Store().Service(name)
		if err != nil || rec.V != store.ServiceFormat {
			t.Errorf("%s: format %d, %v", name, rec.V, err)
		}
	}
	var secrets map[string]string
	raw, _ := os.ReadFile("testdata/store-v1/cron-secrets.json")
	if err := json.Unmarshal(raw, &secrets); err != nil {
		t.Fatal(err)
	}

	api := config(t, c, "api-svc")
	if api.Image != "localhost/hello:latest" || api.MemoryMB != 256 || api.MaxInstances != 3 || api.PauseAfter != 5*time.Second ||
		api.Env["GREETING"] != "hello" || api.Env["TOKEN"] != "s3cret" || api.Env[CronSecretEnv] != secrets["api-svc"] {
		t.Errorf("api-svc runs %+v", api)
	}
	if st, _ := c.Status("api-svc"); st.Source != "api" {
		t.Errorf("api-svc source %q", st.Source)
	}
	if cfg := config(t, c, "config-svc"); cfg.Env["API_ONLY"] != "1" || cfg.Env[CronSecretEnv] != secrets["config-svc"] {
		t.Errorf("config-svc runs env %v", cfg.Env)
	}
	revs, err := c.Revisions("api-svc")
	if err != nil || len(revs) < 2 || revs[len(revs)-1].Reason != "api" || revs[len(revs)-2].Reason != "env" {
		t.Errorf("api-svc revisions %+v, %v", revs, err)
	}
	jobs, _ := c.CronJobs("api-svc")
	if len(jobs) != 1 || jobs[0].Name != "poll" || jobs[0].Retries != 2 || jobs[0].Method != "POST" {
		t.Errorf("api-svc jobs %+v", jobs)
	}
	// The stored run (the scheduler may add a "missed" one after it).
	runs, err := c.CronRuns("api-svc", "poll")
	if err != nil || len(runs) == 0 || runs[len(runs)-1].StatusCode != 200 || runs[len(runs)-1].Status != "succeeded" {
		t.Errorf("api-svc poll runs %+v, %v", runs, err)
	}
	if jobs, _ := c.CronJobs("config-svc"); len(jobs) != 1 || jobs[0].Path != "/hourly" || jobs[0].Source != "api" {
		t.Errorf("config-svc jobs %+v", jobs)
	}
	// The git service: its stored build is listed, a new build deploys.
	eventually(t, "git-svc deploys a build", func() bool { return c.Scaler().Service("git-svc") != nil })
	if cfg := config(t, c, "git-svc"); cfg.Image != "sha256:2222222222222222222222222222222222222222" || cfg.Port != 9000 || cfg.Env[CronSecretEnv] != secrets["git-svc"] {
		t.Errorf("git-svc runs %+v", cfg)
	}
	builds, err := c.Builds("git-svc")
	// Newest first: the stored build is the last.
	if err != nil || len(builds) < 2 || builds[len(builds)-1].ID != 1 || builds[len(builds)-1].Commit != "0123456789abcdef0123456789abcdef01234567" || builds[0].ID <= 1 {
		t.Errorf("git-svc builds %+v, %v", builds, err)
	}
	if c.Route("git-svc").WebhookPath() != "/_podcell/deploy" {
		t.Errorf("git-svc webhook path %q", c.Route("git-svc").WebhookPath())
	}
	if lines, _, _ := mustLog(t, c, "git-svc", 1).From(0); len(lines) != 2 {
		t.Errorf("build 1's log: %q", lines)
	}
}

func mustLog(t *testing.T, c *Controller, name string, id int) BuildLog {
	t.Helper()
	l, err := c.Log(name, id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A git service deploys each build through reconcile; a failed build
// leaves the running one; a webhook (its own route) deploys a push.
func TestDeployAndWebhook(t *testing.T) {
	b := new(fakebuild.Builder)
	b.SetCommit(strings.Repeat("a", 40))
	c, _ := newTest(t, b)
	spec := ServiceSpec{Git: &GitSource{URL: "https://example.com/app.git", Ref: "main", Runtime: "python3.11-debian",
		WebhookPath: "/_hook", WebhookSecret: "k"}, Env: map[string]string{"E": "1"}}
	if _, _, err := c.Put("app", spec); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first build deploys", func() bool { return c.Scaler().Service("app") != nil })
	if cfg := config(t, c, "app"); cfg.Image != "sha256:"+strings.Repeat("a", 40) || cfg.Env["E"] != "1" {
		t.Errorf("runs %+v", cfg)
	}
	b.SetCommit("")
	id, err := c.Deploy("app")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the failing build ends", func() bool {
		builds, _ := c.Builds("app") // newest first
		return builds[0].ID == id && builds[0].Status == "failed"
	})
	if cfg := config(t, c, "app"); cfg.Image != "sha256:"+strings.Repeat("a", 40) {
		t.Errorf("a failed build changed the image to %s", cfg.Image)
	}

	b.SetCommit(strings.Repeat("b", 40))
	body := `{"ref":"refs/heads/main","repository":{"default_branch":"main"}}`
	mac := hmac.New(sha256.New, []byte("k"))
	mac.Write([]byte(body))
	r := httptest.NewRequest("POST", "/_hook", strings.NewReader(body))
	r.Header.Set("X-GitHub-Event", "push")
	r.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	w := httptest.NewRecorder()
	c.ServeWebhook(w, r, "app")
	if w.Code != http.StatusAccepted {
		t.Fatalf("webhook: %d %s", w.Code, w.Body)
	}
	eventually(t, "the pushed commit deploys", func() bool {
		return c.Scaler().Service("app").Config().Image == "sha256:"+strings.Repeat("b", 40)
	})
	revs, _ := c.Revisions("app")
	if revs[0].Reason != "deploy" || revs[0].Build == 0 {
		t.Errorf("newest revision %+v", revs[0])
	}
	// Rolling back to the first build's image.
	if _, err := c.Rollback("app", revs[1].Seq); err != nil {
		t.Fatal(err)
	}
	if cfg := config(t, c, "app"); cfg.Image != "sha256:"+strings.Repeat("a", 40) {
		t.Errorf("rollback runs %s", cfg.Image)
	}
	if _, err := c.Deploy("nosuch"); code(err) != http.StatusNotFound {
		t.Errorf("deploy of nothing: %v", err)
	}
	w = httptest.NewRecorder()
	c.ServeWebhook(w, httptest.NewRequest("POST", "/_hook", nil), "nosuch")
	if w.Code != http.StatusNotFound {
		t.Errorf("webhook of nothing: %d", w.Code)
	}
}

// Do sends a request to an instance as a client of the service's route
// would: the scheduler's calls come this way.
func TestGatewayDo(t *testing.T) {
	c, rt := newTest(t, nil, image("web", "localhost/web:1", map[string]string{"A": "1"}))
	req, _ := http.NewRequest("POST", "http://ignored/tasks/run?x=1", strings.NewReader("body"))
	req.Header.Set("Podcell-Cron", "tick")
	resp, err := c.Route("web").Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Method string
		URI    string
		Header http.Header
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%d %s: %v", resp.StatusCode, b, err)
	}
	if resp.StatusCode != 200 || got.Method != "POST" || got.URI != "/tasks/run?x=1" ||
		got.Header.Get("Podcell-Cron") != "tick" || got.Header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("%d %+v", resp.StatusCode, got)
	}
	if running(rt) != 1 {
		t.Errorf("%d instances run", running(rt))
	}
	// A gateway of a service that never runs answers 503 after its queue
	// timeout, as a client would get it.
	gw := c.Gateway("never")
	gw.declare(10*time.Millisecond, "")
	resp, err = gw.Do(context.Background(), httptest.NewRequest("GET", "/", nil))
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("no revision: %v %v", resp, err)
	}
}

// Operations before the first Start answer 503, not a panic.
func TestNotStarted(t *testing.T) {
	dir := t.TempDir()
	key, _ := store.LoadKey(store.KeySource{}, dir, filepath.Join(dir, "store"))
	c, err := New(Options{DataDir: dir, Key: key, Runtime: scalertest.NewFake(t), Scaler: scaler.Options{Owner: "ctltest"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	_, _, err = c.Put("a", ServiceSpec{Image: "x"})
	wantCode(t, "put", err, http.StatusServiceUnavailable, "not running")
	_, err = c.Env("a", false)
	wantCode(t, "env", err, http.StatusServiceUnavailable, "not running")
}

// A record of a newer format, of any kind, stops the store from opening,
// naming the record; an older podcell never rewrites what it does not
// understand.
func TestNewerRecordFormatRefused(t *testing.T) {
	for _, tc := range []struct {
		key  string
		rec  map[string]any
		says string
	}{
		{"service/x", map[string]any{"v": store.ServiceFormat + 1, "name": "x", "spec": map[string]any{"image": "x"}},
			fmt.Sprintf("service record x has format %d, newer than this podcell's %d", store.ServiceFormat+1, store.ServiceFormat)},
		{"revision/x/0000000001", map[string]any{"v": store.RevisionFormat + 1, "seq": 1, "id": "abc", "image": "x"},
			fmt.Sprintf("revision record x/0000000001 has format %d, newer", store.RevisionFormat+1)},
		{"build/x/0000000001", map[string]any{"v": store.BuildFormat + 1, "id": 1},
			fmt.Sprintf("build record x/0000000001 has format %d, newer", store.BuildFormat+1)},
		{"cron/x/tick", map[string]any{"v": store.CronJobFormat + 1, "schedule": "@hourly", "path": "/"},
			fmt.Sprintf("cron job record x/tick has format %d, newer", store.CronJobFormat+1)},
	} {
		dir := t.TempDir()
		key, _ := store.LoadKey(store.KeySource{}, dir, filepath.Join(dir, "store"))
		st, err := store.Open(filepath.Join(dir, "store"), key, nil)
		if err != nil {
			t.Fatal(err)
		}
		st.Put(tc.key, tc.rec)
		st.Close()
		c, err := New(Options{DataDir: dir, Key: key, Runtime: scalertest.NewFake(t), Scaler: scaler.Options{Owner: "ctltest"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(Settings{}, nil); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %q", tc.key, err, tc.says)
		}
		c.Close(context.Background())
	}
}

// A job's run goes to the service's gateway (Gateway.Do), which starts an
// instance for it; a job of a service nobody declares fails saying so.
func TestRunJobThroughTheGateway(t *testing.T) {
	c, rt := newTest(t, nil, Declared{Name: "web", Spec: ServiceSpec{Image: "localhost/web:1",
		Cron: []cron.Job{{Name: "sync", Schedule: "@yearly", Method: "POST", Path: "/sync"}}}})
	if err := c.RunJob("web", "sync"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the run succeeds", func() bool {
		runs, _ := c.CronRuns("web", "sync")
		return len(runs) > 0 && runs[0].Status == "succeeded" && runs[0].StatusCode == 200
	})
	if running(rt) != 1 {
		t.Errorf("%d instances run for the job", running(rt))
	}
	wantCode(t, "run a job nobody declared", c.RunJob("web", "nosuch"), http.StatusNotFound, `"nosuch"`)
}

// The warm request path through the gateway allocates nothing: Try on a
// running instance, and counting the answer.
func TestGatewayTryWarmPathAllocatesNothing(t *testing.T) {
	c, _ := newTest(t, nil, image("web", "localhost/web:1", nil))
	gw := c.Route("web")
	ctx := context.Background()
	var addr string
	fn := func(a Attempt) error { addr = a.Addr; return nil }
	if err := gw.Try(ctx, fn); err != nil || addr == "" {
		t.Fatalf("first try: %v (addr %q)", err, addr)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := gw.Try(ctx, fn); err != nil {
			t.Fatal(err)
		}
		gw.Count(200, time.Millisecond, "")
	})
	if allocs != 0 {
		t.Errorf("the warm path allocates %v times per request", allocs)
	}
}

// The gateway boxes an address once, and a full cache starts again.
func TestUpstreamValues(t *testing.T) {
	var u upstreamValues
	a := u.value("127.0.0.1:1")
	if a != "127.0.0.1:1" || u.value("127.0.0.1:1") != a {
		t.Fatalf("value = %v, want the address", a)
	}
	for i := range maxUpstreamValues + 1 {
		u.value(fmt.Sprintf("127.0.0.1:%d", 2+i))
	}
	if n := len(*u.m.Load()); n > maxUpstreamValues {
		t.Errorf("%d addresses kept, want at most %d", n, maxUpstreamValues)
	}
}

// TestFailedFirstBuildAnswersAtOnce: a git service that never ran has
// nothing to wait for: while its first build runs a request gets 503
// "building" at once, and once that build failed, the failure (naming its
// reason), not an empty 503 after queue_timeout. A request that waited
// before the build began gets the failure when it comes. A new build
// makes requests answer "building" again, and its success serves them.
func TestFailedFirstBuildAnswersAtOnce(t *testing.T) {
	b := new(fakebuild.Builder) // no commit: builds fail
	b.Hold()
	c, _ := newTest(t, b)
	spec := ServiceSpec{Git: &GitSource{URL: "https://example.com/app.git", Ref: "main"}, QueueTimeout: Duration(time.Hour)}
	if _, _, err := c.Put("app", spec); err != nil {
		t.Fatal(err)
	}
	gw := c.Gateway("app")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// With queue_timeout 1h, only an answer at once ends these waits.
	_, err := gw.Service(ctx)
	if !errors.Is(err, ErrBuilding) {
		t.Fatalf("during the first build: err = %v, want ErrBuilding at once", err)
	}
	if code, retry, msg := StatusOf("app", err); code != http.StatusServiceUnavailable || retry == "" ||
		!strings.Contains(msg.Error(), "service app: building its first revision") {
		t.Errorf("building: answer %d %q %v", code, retry, msg)
	}
	// Listed with its state before it ever ran.
	listed := func(state, reason string) {
		t.Helper()
		list := c.Services()
		if len(list) != 1 || list[0].Name != "app" || list[0].State != state || !strings.Contains(list[0].Error, reason) ||
			list[0].Deploy == nil || len(list[0].Deploy.Builds) == 0 {
			t.Errorf("services: %+v, want app %s (%q) with its builds", list, state, reason)
		}
	}
	listed(StateBuilding, "")
	b.Release()
	eventually(t, "the first build fails", func() bool {
		builds, _ := c.Builds("app")
		return len(builds) == 1 && builds[0].Status == "failed"
	})
	if builds, _ := c.Builds("app"); builds[0].Trigger != "api" {
		t.Errorf("the first build of a service the API declared has trigger %q, want api", builds[0].Trigger)
	}
	_, err = gw.Service(ctx)
	var bf *BuildFailedError
	if !errors.As(err, &bf) || !strings.Contains(bf.Reason, "the repository has no commit") {
		t.Fatalf("err = %v, want the build's failure", err)
	}
	if code, retry, msg := StatusOf("app", err); code != http.StatusServiceUnavailable || retry == "" ||
		msg.Error() != "service app: build failed: the repository has no commit; see caddy podcell builds app" {
		t.Errorf("answer %d %q %v", code, retry, msg)
	}
	listed(StateBuildFailed, "the repository has no commit")

	// A request that waited before the build began (Caddy's server may
	// take requests before the controller starts) gets its failure.
	waiting := c.Gateway("later")
	waiting.declare(time.Hour, "")
	got := make(chan error, 1)
	go func() { _, err := waiting.Service(ctx); got <- err }()
	waiting.buildStarted()
	waiting.buildFailed("boom")
	if err := <-got; !errors.As(err, &bf) || bf.Reason != "boom" {
		t.Errorf("a waiting request got %v, want the build's failure", err)
	}

	// The next build answers "building" again, then serves.
	b.SetCommit(strings.Repeat("c", 40))
	b.Hold()
	if _, err := c.Deploy("app"); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Service(ctx); !errors.Is(err, ErrBuilding) {
		t.Errorf("during the second build: %v, want ErrBuilding", err)
	}
	b.Release()
	eventually(t, "the good build serves", func() bool {
		svc, err := gw.Service(ctx)
		return err == nil && svc != nil
	})
	listed(StateServing, "")
}

// A queue_timeout set below start_timeout is valid but turns the first
// visitor of a slow start away: declaring it warns, naming both fields
// and the fix. Left out, the queue timeout follows the start timeout.
func TestQueueTimeoutBelowStartTimeoutWarns(t *testing.T) {
	short := ServiceSpec{Image: "localhost/web:1", QueueTimeout: Duration(10 * time.Second)}
	w := short.Warnings("web")
	if len(w) != 1 || !strings.Contains(w[0], "queue_timeout 10s is shorter than start_timeout 1m0s") || !strings.Contains(w[0], "raise queue_timeout") {
		t.Errorf("warnings %q", w)
	}
	for _, ok := range []ServiceSpec{
		{Image: "localhost/web:1"},
		{Image: "localhost/web:1", StartTimeout: Duration(3 * time.Minute)},
		{Image: "localhost/web:1", QueueTimeout: Duration(2 * time.Minute)},
	} {
		if w := ok.Warnings("web"); len(w) != 0 {
			t.Errorf("%+v warns %q", ok, w)
		}
		if cfg := ok.Config("web"); cfg.QueueTimeout <= cfg.StartTimeout {
			t.Errorf("%+v: queue_timeout %s, start_timeout %s", ok, cfg.QueueTimeout, cfg.StartTimeout)
		}
	}
}

// A failed build of an unchanged source is not built again by every
// config reload: only on a new commit, a deploy, or by a reload after
// its backoff, which doubles with each failure of the same source.
func TestFailedBuildNotRetriedOnEveryReload(t *testing.T) {
	b := new(fakebuild.Builder) // no commit: builds fail
	app := Declared{Name: "app", Spec: ServiceSpec{Git: &GitSource{URL: "https://example.com/app.git", Ref: "main"}}}
	c, _ := newTest(t, b, app)
	failedBuilds := func(n int) func() bool {
		return func() bool {
			builds, _ := c.Builds("app")
			return len(builds) == n && builds[0].Status == "failed" && b.Builds() == n
		}
	}
	eventually(t, "the first build fails", failedBuilds(1))
	dep := func() *deployer {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.services["app"].dep
	}()
	skipped := func() int {
		dep.mu.Lock()
		defer dep.mu.Unlock()
		return dep.skipped
	}
	settings := Settings{Builder: b, KeepImages: DefaultKeepImages}
	other := image("other", "localhost/other:1", nil)
	// Reloads that add other sites, or change the service's other
	// settings, with the same source and commit.
	for i, config := range [][]Declared{{app, other}, {app}, {{Name: "app", Spec: ServiceSpec{Git: app.Spec.Git, MemoryMB: 512}}}} {
		if err := c.Start(settings, config); err != nil {
			t.Fatal(err)
		}
		// The reload's check of the ref runs in the background.
		eventually(t, "the reload decides", func() bool { return skipped() == i+1 || b.Builds() > 1 })
		if n := b.Builds(); n != 1 {
			t.Fatalf("reload %d built the failed source again: %d builds", i, n)
		}
	}
	if st, _ := c.Status("app"); st.State != StateBuildFailed {
		t.Errorf("state %q after the skipped rebuilds, want %s", st.State, StateBuildFailed)
	}
	// A deploy builds it.
	if _, err := c.Deploy("app"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deploy's build fails", failedBuilds(2))
	dep.mu.Lock()
	backoff := dep.failure.backoff
	dep.failure.at = time.Now().Add(-backoff) // the backoff has passed
	dep.mu.Unlock()
	if backoff != 2*failedBuildBackoff {
		t.Errorf("backoff after two failures of the same source: %s, want %s", backoff, 2*failedBuildBackoff)
	}
	if err := c.Start(settings, []Declared{app}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a reload after the backoff builds again", failedBuilds(3))
	// A new commit builds at the next reload, within the backoff.
	b.SetCommit(strings.Repeat("d", 40))
	if err := c.Start(settings, []Declared{app}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new commit deploys", func() bool { return c.Scaler().Service("app") != nil })
}

// Lists show a git service's image by its build's tag, not the image ID
// it runs by (kept as image_id), and builds newest first.
func TestListsShowTagsAndNewestBuildsFirst(t *testing.T) {
	b := new(fakebuild.Builder)
	b.SetCommit(strings.Repeat("a", 40))
	c, _ := newTest(t, b)
	if _, _, err := c.Put("app", ServiceSpec{Git: &GitSource{URL: "https://example.com/app.git", Ref: "main"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first build deploys", func() bool { return c.Scaler().Service("app") != nil })
	b.SetCommit(strings.Repeat("b", 40))
	id, err := c.Deploy("app")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second build deploys", func() bool {
		return c.Scaler().Service("app").Config().Image == "sha256:"+strings.Repeat("b", 40)
	})
	tag := imageTag("app", (&GitSource{URL: "https://example.com/app.git", Ref: "main"}).BuildSpec(8080))
	st := c.Services()[0]
	if st.Image != tag || st.ImageID != "sha256:"+strings.Repeat("b", 40) {
		t.Errorf("services: image %q, image_id %q; want the tag %s and the image's id", st.Image, st.ImageID, tag)
	}
	revs, _ := c.Revisions("app")
	if len(revs) != 2 || revs[0].Image != tag || revs[1].ImageID != "sha256:"+strings.Repeat("a", 40) {
		t.Errorf("revisions %+v; want each by its tag, with its image id", revs)
	}
	builds, _ := c.Builds("app")
	if len(builds) != 2 || builds[0].ID != id || builds[1].ID != 1 || st.Deploy.Builds[0].ID != id {
		t.Errorf("builds %+v, want newest (%d) first", builds, id)
	}
}
