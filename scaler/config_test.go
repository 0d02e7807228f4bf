package scaler

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func validConfig() ServiceConfig {
	return ServiceConfig{Name: "hello", Image: "localhost/hello:latest"}
}

func TestConfigDefaults(t *testing.T) {
	c := validConfig().WithDefaults()
	want := ServiceConfig{
		Name: "hello", Image: "localhost/hello:latest",
		Port: 8080, MemoryMB: 256, TmpMB: 64, PidsLimit: 512,
		MinInstances: 0, MaxInstances: 10, Concurrency: 80,
		PauseAfter: 10 * time.Second, IdleTimeout: 5 * time.Minute, StableWindow: 60 * time.Second,
		QueueSize: 1000, QueueTimeout: 65 * time.Second,
		StartTimeout: 60 * time.Second, DrainTimeout: 30 * time.Second, StopGrace: 5 * time.Second,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults = %+v\nwant       %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}

	// The queue timeout follows the start timeout, so a request outwaits
	// a slow start.
	slow := validConfig()
	slow.StartTimeout = 2 * time.Minute
	if got := slow.WithDefaults().QueueTimeout; got != 2*time.Minute+5*time.Second {
		t.Errorf("start_timeout 2m: queue_timeout defaults to %s, want 2m5s", got)
	}
	fast := validConfig()
	fast.StartTimeout = 5 * time.Second
	if got := fast.WithDefaults().QueueTimeout; got != 30*time.Second {
		t.Errorf("start_timeout 5s: queue_timeout defaults to %s, want 30s", got)
	}

	// Set fields are kept.
	set := ServiceConfig{Name: "x", Image: "i", Port: 9000, MemoryMB: 512, TmpMB: 100, PidsLimit: 64,
		MinInstances: 1, MaxInstances: 2, Concurrency: 3, PauseAfter: -1, IdleTimeout: time.Second,
		StableWindow: 2 * time.Second, QueueSize: 4, QueueTimeout: 3 * time.Second, StartTimeout: 4 * time.Second,
		DrainTimeout: 5 * time.Second, StopGrace: 6 * time.Second, HealthPath: "/h"}
	got := set.WithDefaults()
	if !reflect.DeepEqual(got, set) {
		t.Errorf("WithDefaults changed set fields:\n got %+v\nwant %+v", got, set)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("valid config rejected: %v", err)
	}
}

func TestConfigValidateRejects(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*ServiceConfig)
		want string // the field the error must name
	}{
		{"empty name", func(c *ServiceConfig) { c.Name = "" }, "name"},
		{"uppercase name", func(c *ServiceConfig) { c.Name = "Hello" }, "name"},
		{"name starting with dash", func(c *ServiceConfig) { c.Name = "-hello" }, "name"},
		{"name ending with dash", func(c *ServiceConfig) { c.Name = "hello-" }, "name"},
		{"name with dot", func(c *ServiceConfig) { c.Name = "a.b" }, "name"},
		{"name too long", func(c *ServiceConfig) { c.Name = strings.Repeat("a", 41) }, "name"},
		{"no image", func(c *ServiceConfig) { c.Image = "" }, "image"},
		{"blank image", func(c *ServiceConfig) { c.Image = "  " }, "image"},
		{"port too big", func(c *ServiceConfig) { c.Port = 65536 }, "port"},
		{"negative port", func(c *ServiceConfig) { c.Port = -1 }, "port"},
		{"memory too small", func(c *ServiceConfig) { c.MemoryMB = 127 }, "memory"},
		{"memory too big", func(c *ServiceConfig) { c.MemoryMB = 7077 }, "memory"},
		{"negative tmp", func(c *ServiceConfig) { c.TmpMB = -1 }, "tmp_size"},
		{"pids too small", func(c *ServiceConfig) { c.PidsLimit = 8 }, "pids_limit"},
		{"env name with dash", func(c *ServiceConfig) { c.Env = map[string]string{"A-B": "1"} }, "env name"},
		{"env name starting with digit", func(c *ServiceConfig) { c.Env = map[string]string{"1A": "1"} }, "env name"},
		{"empty env name", func(c *ServiceConfig) { c.Env = map[string]string{"": "1"} }, "env name"},
		{"env name too long", func(c *ServiceConfig) { c.Env = map[string]string{strings.Repeat("A", 129): "1"} }, "up to 128"},
		{"PORT env", func(c *ServiceConfig) { c.Env = map[string]string{"PORT": "9000"} }, "PORT"},
		{"negative min_instances", func(c *ServiceConfig) { c.MinInstances = -1 }, "min_instances"},
		{"negative max_instances", func(c *ServiceConfig) { c.MaxInstances = -1 }, "max_instances"},
		{"min above max", func(c *ServiceConfig) { c.MinInstances = 3; c.MaxInstances = 2 }, "min_instances 3 exceeds max_instances 2"},
		{"negative concurrency", func(c *ServiceConfig) { c.Concurrency = -1 }, "concurrency"},
		{"negative queue_size", func(c *ServiceConfig) { c.QueueSize = -1 }, "queue_size"},
		{"negative idle_timeout", func(c *ServiceConfig) { c.IdleTimeout = -1 }, "idle_timeout"},
		{"negative stable_window", func(c *ServiceConfig) { c.StableWindow = -1 }, "stable_window"},
		{"negative queue_timeout", func(c *ServiceConfig) { c.QueueTimeout = -1 }, "queue_timeout"},
		{"negative start_timeout", func(c *ServiceConfig) { c.StartTimeout = -1 }, "start_timeout"},
		{"negative drain_timeout", func(c *ServiceConfig) { c.DrainTimeout = -1 }, "drain_timeout"},
		{"negative stop_grace", func(c *ServiceConfig) { c.StopGrace = -1 }, "stop_grace"},
		{"pause_after equal to idle_timeout", func(c *ServiceConfig) { c.PauseAfter = time.Minute; c.IdleTimeout = time.Minute }, "pause_after"},
		{"pause_after above idle_timeout", func(c *ServiceConfig) { c.PauseAfter = 2 * time.Minute; c.IdleTimeout = time.Minute }, "pause_after"},
		{"relative health_path", func(c *ServiceConfig) { c.HealthPath = "healthz" }, "health_path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mod(&c)
			err := c.WithDefaults().Validate()
			if err == nil {
				t.Fatalf("Validate accepted %+v", c.WithDefaults())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			if c.Name == "hello" && !strings.Contains(err.Error(), "service hello") {
				t.Errorf("error %q does not name the service", err)
			}
		})
	}
}

func TestConfigValidateAccepts(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*ServiceConfig)
	}{
		{"one-letter name", func(c *ServiceConfig) { c.Name = "a" }},
		{"40-letter name", func(c *ServiceConfig) { c.Name = strings.Repeat("a", 40) }},
		{"name with dash and digits", func(c *ServiceConfig) { c.Name = "api-2" }},
		{"port 1", func(c *ServiceConfig) { c.Port = 1 }},
		{"port 65535", func(c *ServiceConfig) { c.Port = 65535 }},
		{"memory 128", func(c *ServiceConfig) { c.MemoryMB = 128 }},
		{"memory 7076", func(c *ServiceConfig) { c.MemoryMB = 7076 }},
		{"env names", func(c *ServiceConfig) { c.Env = map[string]string{"_X": "", "a1": "v", "HOME": "/x"} }},
		{"min equals max", func(c *ServiceConfig) { c.MinInstances = 2; c.MaxInstances = 2 }},
		{"pausing disabled", func(c *ServiceConfig) { c.PauseAfter = -1; c.IdleTimeout = time.Second }},
		{"pause_after just below idle_timeout", func(c *ServiceConfig) { c.PauseAfter = time.Minute - 1; c.IdleTimeout = time.Minute }},
		{"health_path", func(c *ServiceConfig) { c.HealthPath = "/healthz" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mod(&c)
			if err := c.WithDefaults().Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestConfigRevision(t *testing.T) {
	base := func() ServiceConfig {
		c := validConfig()
		c.Env = map[string]string{"A": "1", "B": "2", "C": "3"}
		return c.WithDefaults()
	}
	rev := base().Revision()
	if len(rev) != 12 || strings.Trim(rev, "0123456789abcdef") != "" {
		t.Fatalf("revision %q is not 12 hex digits", rev)
	}
	if again := base().Revision(); again != rev {
		t.Fatalf("revision not stable: %s then %s", rev, again)
	}

	changes := []struct {
		name string
		mod  func(*ServiceConfig)
	}{
		{"image", func(c *ServiceConfig) { c.Image = "localhost/hello:v2" }},
		{"env value", func(c *ServiceConfig) { c.Env["A"] = "2" }},
		{"env added", func(c *ServiceConfig) { c.Env["D"] = "" }},
		{"env removed", func(c *ServiceConfig) { delete(c.Env, "C") }},
		{"env key and value swapped between entries", func(c *ServiceConfig) { c.Env = map[string]string{"A": "2", "B": "1", "C": "3"} }},
		{"memory", func(c *ServiceConfig) { c.MemoryMB = 512 }},
		{"tmp", func(c *ServiceConfig) { c.TmpMB = 32 }},
		{"pids", func(c *ServiceConfig) { c.PidsLimit = 100 }},
		{"command", func(c *ServiceConfig) { c.Command = []string{"/app", "-v"} }},
		{"command split differently", func(c *ServiceConfig) { c.Command = []string{"/app -v"} }},
		{"port", func(c *ServiceConfig) { c.Port = 9090 }},
		{"health_path", func(c *ServiceConfig) { c.HealthPath = "/healthz" }},
	}
	for _, tc := range changes {
		c := base()
		tc.mod(&c)
		if got := c.Revision(); got == rev {
			t.Errorf("changing %s keeps revision %s", tc.name, rev)
		}
	}

	same := []struct {
		name string
		mod  func(*ServiceConfig)
	}{
		{"max_instances", func(c *ServiceConfig) { c.MaxInstances = 99 }},
		{"min_instances", func(c *ServiceConfig) { c.MinInstances = 1 }},
		{"concurrency", func(c *ServiceConfig) { c.Concurrency = 1 }},
		{"queue", func(c *ServiceConfig) { c.QueueSize = 5; c.QueueTimeout = time.Second }},
		{"timers", func(c *ServiceConfig) {
			c.PauseAfter = -1
			c.IdleTimeout = time.Hour
			c.StableWindow = time.Second
			c.StartTimeout = time.Second
			c.DrainTimeout = time.Second
			c.StopGrace = time.Second
		}},
		{"env map rebuilt in another order", func(c *ServiceConfig) {
			c.Env = map[string]string{}
			for _, k := range []string{"C", "A", "B"} {
				c.Env[k] = base().Env[k]
			}
		}},
	}
	for _, tc := range same {
		c := base()
		tc.mod(&c)
		if got := c.Revision(); got != rev {
			t.Errorf("changing %s changes revision %s to %s", tc.name, rev, got)
		}
	}
}
