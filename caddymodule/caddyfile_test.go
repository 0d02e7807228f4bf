package caddymodule

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/podcell/podcell/caddymodule/controller"
	"github.com/podcell/podcell/caddymodule/cron"
)

// The Caddyfile through Caddy's own adapter, in process: what `caddy adapt`
// makes of a podcell block, and that the JSON loads back into the same
// handler (what a reload of autosave.json does).

func adapt(t *testing.T, caddyfile string) (map[string]any, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg, nil
}

// handlers finds the podcell handlers of an adapted config, as JSON.
func handlers(cfg map[string]any) []json.RawMessage {
	var out []json.RawMessage
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "podcell" {
				b, _ := json.Marshal(v)
				out = append(out, b)
				return
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(cfg)
	return out
}

func TestCaddyfileRoundTrip(t *testing.T) {
	cfg, err := adapt(t, `{
	podcell {
		data_dir /var/lib/podcell
		owner test
		keep_images 2
		build_timeout 10m
		build_ca /usr/local/share/ca-certificates
		build_proxy https http://proxy.internal:3128
		build_proxy no_proxy localhost
		dashboard
	}
}
http://localhost {
	podcell hello {
		image localhost/hello:latest
		port 9000
		env GREETING "hello world"
		env DB {file./run/secrets/db}
		memory 512MB
		min_instances 1
		pause_after off
		idle_timeout 2m
		queue_timeout 5s
		health_path /healthz
		cron @hourly POST /tasks/sync
	}
}
http://app.localhost {
	podcell app {
		git https://example.com/app.git main
		runtime python3.11-debian
		install "pip install -r requirements/prod.txt"
		build_env PIP_INDEX_URL https://pypi.internal/simple
		auto_deploy 1m
		webhook /_podcell/deploy {env.HOOK}
		build_memory 1GiB
	}
}
http://*.apps.localhost {
	podcell {
		hosts *.apps.localhost
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	var app App
	appJSON, _ := json.Marshal(cfg["apps"].(map[string]any)["podcell"])
	if err := json.Unmarshal(appJSON, &app); err != nil {
		t.Fatal(err)
	}
	if app.DataDir != "/var/lib/podcell" || app.Owner != "test" || *app.KeepImages != 2 || app.BuildTimeout != controller.Duration(10*time.Minute) || !app.Dashboard ||
		app.BuildCA != "/usr/local/share/ca-certificates" || app.BuildProxy.HTTPS != "http://proxy.internal:3128" || app.BuildProxy.NoProxy != "localhost" {
		t.Errorf("app %s", appJSON)
	}
	hs := handlers(cfg)
	if len(hs) != 3 {
		t.Fatalf("%d podcell handlers in %v", len(hs), cfg)
	}
	want := map[string]controller.ServiceSpec{
		"hello": {Image: "localhost/hello:latest", Port: 9000, Env: map[string]string{"GREETING": "hello world", "DB": "{file./run/secrets/db}"},
			MemoryMB: 512, MinInstances: 1, PauseAfter: -1, IdleTimeout: controller.Duration(2 * time.Minute),
			QueueTimeout: controller.Duration(5 * time.Second), HealthPath: "/healthz",
			Cron: []cron.Job{{Schedule: "@hourly", Method: "POST", Path: "/tasks/sync"}}},
		"app": {Git: &controller.GitSource{URL: "https://example.com/app.git", Ref: "main", Runtime: "python3.11-debian",
			Install: "pip install -r requirements/prod.txt", BuildEnv: map[string]string{"PIP_INDEX_URL": "https://pypi.internal/simple"},
			PollInterval: controller.Duration(time.Minute), WebhookPath: "/_podcell/deploy", WebhookSecret: "{env.HOOK}", BuildMemoryMB: 1024}},
	}
	for _, raw := range hs {
		var h Handler
		if err := json.Unmarshal(raw, &h); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if h.Service == "" {
			if !reflect.DeepEqual(h.Hosts, []string{"*.apps.localhost"}) {
				t.Errorf("host mode: %s", raw)
			}
			continue
		}
		if !reflect.DeepEqual(h.ServiceSpec, want[h.Service]) {
			t.Errorf("%s:\n got %+v\nwant %+v\nfrom %s", h.Service, h.ServiceSpec, want[h.Service], raw)
		}
		if err := h.Validate(); err != nil {
			t.Errorf("%s: %v", h.Service, err)
		}
		// The handler's JSON, marshaled again, loads into the same spec.
		again, _ := json.Marshal(h)
		var back Handler
		if err := json.Unmarshal(again, &back); err != nil || !reflect.DeepEqual(back.ServiceSpec, h.ServiceSpec) {
			t.Errorf("%s: %s does not load back: %v", h.Service, again, err)
		}
		// The spec's JSON is what the admin API takes for the service.
		specJSON, _ := json.Marshal(h.ServiceSpec)
		if spec, err := controller.DecodeSpec(specJSON); err != nil || !reflect.DeepEqual(spec, h.ServiceSpec) {
			t.Errorf("%s: the admin API reads %s as %+v, %v", h.Service, specJSON, spec, err)
		}
	}
}

// What the Caddyfile refuses, in process (TestValidateCatchesBadConfig
// runs the same through the built binary).
func TestCaddyfileRefuses(t *testing.T) {
	for name, tc := range map[string]struct{ block, says string }{
		"unknown subdirective": {"podcell a {\n\timage x\n\tmemroy 256MB\n}", `unknown podcell subdirective "memroy"`},
		"memory out of range":  {"podcell a {\n\timage x\n\tmemory 100MB\n}", "memory 100 MB is out of range: use 128 MB to 7076 MB"},
		"memory unit":          {"podcell a {\n\timage x\n\tmemory 256kb\n}", "use MB or GB"},
		"bad duration":         {"podcell a {\n\timage x\n\tidle_timeout soon\n}", "want a positive duration"},
		"no image":             {"podcell a {\n\tport 8080\n}", "image or git is required"},
		"bad name":             {"podcell Hello_World {\n\timage x\n}", `"Hello_World" is invalid`},
		"min over max":         {"podcell a {\n\timage x\n\tmin_instances 3\n\tmax_instances 2\n}", "min_instances 3 exceeds max_instances 2"},
		"image and git":        {"podcell a {\n\timage x\n\tgit https://example.com/a.git\n\truntime python3.11-debian\n}", "not both"},
		"git options alone":    {"podcell a {\n\timage x\n\truntime python3.11-debian\n}", "need a git repository"},
		"webhook no secret":    {"podcell a {\n\tgit https://example.com/a.git\n\truntime python3.11-debian\n\twebhook /hook\n}", "webhook takes a path and a secret"},
		"cron method":          {"podcell a {\n\timage x\n\tcron @daily FETCH /x\n}", `method "FETCH" is not supported`},
		"cron secret env":      {"podcell a {\n\timage x\n\tenv PODCELL_CRON_SECRET x\n}", "PODCELL_CRON_SECRET is set by podcell"},
		"port env":             {"podcell a {\n\timage x\n\tenv PORT 1\n}", "env PORT is set by podcell"},
		"health_path":          {"podcell a {\n\timage x\n\thealth_path healthz\n}", `service a: health_path "healthz" must start with '/'`},
		"long env name":        {"podcell a {\n\timage x\n\tenv " + strings.Repeat("A", 129) + " 1\n}", "use up to 128 letters"},
		"cron in host mode":    {"podcell {\n\thosts *.a.localhost\n\tcron @daily GET /x\n}", "cron belongs in the block of a named service"},
		"hosts and service":    {"podcell a {\n\timage x\n\thosts *.a.localhost\n}", "set a service or hosts, not both"},
		"bad host pattern":     {"podcell {\n\thosts apps.localhost\n}", "use a wildcard pattern"},
		"build_env one arg":    {"podcell a {\n\tgit https://example.com/a.git\n\tbuild_env NODE_OPTIONS\n}", "build_env takes a name and a value"},
		"build_env bad name":   {"podcell a {\n\tgit https://example.com/a.git\n\tbuild_env 1X y\n}", `build_env "1X" is not a variable name`},
	} {
		_, err := adapt(t, ":80 {\n"+tc.block+"\n}\n")
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %q", name, err, tc.says)
		}
	}
	for name, tc := range map[string]struct{ global, says string }{
		"userns":        {"userns root", "use auto or host"},
		"keep_images":   {"keep_images -1", "want a whole number >= 0"},
		"unknown":       {"podmn x", `unknown podcell global option "podmn"`},
		"build_cpus":    {"build_cpus lots", "want a positive number of cores"},
		"dashboard arg": {"dashboard on", "takes no argument"},
		"build_proxy":   {"build_proxy ftp x", `the kind is http, https or no_proxy`},
	} {
		_, err := adapt(t, "{\n\tpodcell {\n\t\t"+tc.global+"\n\t}\n}\n:80 {\n\trespond ok\n}\n")
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("global %s: %v, want %q", name, err, tc.says)
		}
	}
}
