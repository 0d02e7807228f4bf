package cron

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/podcell/podcell/caddymodule/internal/duration"
	"github.com/podcell/podcell/scaler"
)

func TestValidateNamesJobAndField(t *testing.T) {
	base := Job{Service: "hello", Name: "nightly", Schedule: "0 3 * * *", Path: "/tasks/nightly"}
	for _, tc := range []struct {
		name   string
		change func(*Job)
		want   string
	}{
		{"schedule range", func(j *Job) { j.Schedule = "61 * * * *" },
			`cron job "nightly" of service hello: schedule "61 * * * *": end of range (61) above maximum (59): 61: use 5 fields (minute hour day-of-month month day-of-week) or @hourly/@daily/@weekly/@monthly/@yearly/@every <duration>`},
		{"six fields", func(j *Job) { j.Schedule = "0 0 3 * * *" }, `schedule "0 0 3 * * *": expected exactly 5 fields, found 6`},
		{"empty schedule", func(j *Job) { j.Schedule = "" }, `schedule "": is empty: use 5 fields`},
		{"descriptor", func(j *Job) { j.Schedule = "@sometimes" }, `unrecognized descriptor: @sometimes: use 5 fields`},
		{"every sub-second", func(j *Job) { j.Schedule = "@every 500ms" }, `@every needs a whole number of seconds`},
		{"every negative", func(j *Job) { j.Schedule = "@every -5m" }, `@every needs a whole number of seconds`},
		{"tz in schedule", func(j *Job) { j.Schedule = "TZ=Europe/Berlin 0 3 * * *" }, `set the time zone with tz`},
		{"never fires", func(j *Job) { j.Schedule = "0 0 30 2 *" }, `never fires`},
		{"method", func(j *Job) { j.Method = "FETCH" }, `cron job "nightly" of service hello: method "FETCH" is not supported: use one of GET HEAD POST PUT PATCH DELETE OPTIONS`},
		{"lowercase method", func(j *Job) { j.Method = "post" }, `method "post" is not supported`},
		{"time zone", func(j *Job) { j.TimeZone = "Mars/Olympus_Mons" }, `cron job "nightly" of service hello: tz "Mars/Olympus_Mons" is not a known time zone`},
		{"relative path", func(j *Job) { j.Path = "tasks" }, `cron job "nightly" of service hello: path "tasks" must start with a single '/'`},
		{"empty path", func(j *Job) { j.Path = "" }, `path "" must start with a single '/'`},
		{"url path", func(j *Job) { j.Path = "//evil.example/x" }, `path "//evil.example/x" must start with a single '/'`},
		{"fragment", func(j *Job) { j.Path = "/x#y" }, `must not contain spaces or '#'`},
		{"negative retries", func(j *Job) { j.Retries = -1 }, `cron job "nightly" of service hello: retries -1 is out of range: use 0 to 10`},
		{"too many retries", func(j *Job) { j.Retries = 11 }, `retries 11 is out of range`},
		{"negative timeout", func(j *Job) { j.Timeout = duration.Duration(-time.Second) }, `timeout -1s must be positive`},
		{"name", func(j *Job) { j.Name = "Nightly_Job" }, `cron job "Nightly_Job" of service hello: name "Nightly_Job" is invalid`},
		{"long name", func(j *Job) { j.Name = strings.Repeat("a", 41) }, `is invalid: use 1-40 lowercase letters`},
		{"service", func(j *Job) { j.Service = "Hello World" }, `cron job "nightly": service name "Hello World" is invalid`},
		{"body with GET", func(j *Job) { j.Body = "{}" }, `a body needs a method that takes one`},
		{"reserved header", func(j *Job) { j.Header = http.Header{"podcell-cron-secret": {"x"}} }, `header Podcell-Cron-Secret is set by podcell`},
		{"host header", func(j *Job) { j.Header = http.Header{"Host": {"other"}} }, `header Host is set by podcell`},
		{"bad header name", func(j *Job) { j.Header = http.Header{"X Y": {"1"}} }, `header name "X Y" is invalid`},
		{"overlap", func(j *Job) { j.Overlap = Overlap(7) }, `overlap Overlap(7): use skip, allow or replace`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := base
			tc.change(&j)
			err := j.WithDefaults().Validate()
			if err == nil {
				t.Fatalf("no error for %+v", j)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\ndoes not contain %q", err, tc.want)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, j := range []Job{
		{Service: "hello", Schedule: "*/5 * * * *", Path: "/"},
		{Service: "hello", Schedule: "@daily", Path: "/x?a=1&b=2", Method: "POST", Body: `{"a":1}`, Header: http.Header{"Content-Type": {"application/json"}}},
		{Service: "hello", Schedule: "@every 90s", Path: "/tick", TimeZone: "Europe/Berlin", Retries: 10, Overlap: OverlapReplace},
		{Service: "a", Name: "x", Schedule: "0 9 * * mon-fri", Path: "/report", Method: "HEAD"},
		{Service: "hello", Schedule: "@yearly", Path: "/y", Method: "OPTIONS", Header: http.Header{"User-Agent": {"mine"}}},
	} {
		if err := j.WithDefaults().Validate(); err != nil {
			t.Errorf("%+v: %v", j, err)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	j := Job{Service: "hello", Schedule: "@hourly", Path: "/x", Header: http.Header{}}.WithDefaults()
	if j.Method != "GET" || j.TimeZone != "UTC" || j.Timeout != duration.Duration(time.Minute) || j.Overlap != OverlapSkip || j.Header != nil || j.Name == "" {
		t.Fatalf("defaults: %+v", j)
	}
}

func TestDefaultName(t *testing.T) {
	a := DefaultName("0 3 * * *", "/tasks/Clean_Up?all=1")
	if a != DefaultName("0 3 * * *", "/tasks/Clean_Up?all=1") {
		t.Fatal("default name is not stable")
	}
	if !strings.HasPrefix(a, "tasks-clean-up-all-1-") {
		t.Errorf("default name %q does not read like its path", a)
	}
	for _, n := range []string{
		a,
		DefaultName("0 3 * * *", "/"),
		DefaultName("@every 1h", "/"+strings.Repeat("very-long-segment/", 10)),
		DefaultName("", "/---/"),
	} {
		if err := scaler.CheckName(n); err != nil {
			t.Errorf("default name %q is not a valid name: %v", n, err)
		}
	}
	if DefaultName("0 3 * * *", "/") != "cron-"+DefaultName("0 3 * * *", "/")[5:] {
		t.Errorf("root path name: %q", DefaultName("0 3 * * *", "/"))
	}
	if a == DefaultName("0 4 * * *", "/tasks/Clean_Up?all=1") || a == DefaultName("0 3 * * *", "/tasks/clean-up?all=1") {
		t.Error("different jobs share a default name")
	}
}

func TestOverlapText(t *testing.T) {
	var v struct{ Overlap Overlap }
	if err := json.Unmarshal([]byte(`{"Overlap":"replace"}`), &v); err != nil || v.Overlap != OverlapReplace {
		t.Fatalf("unmarshal: %v %v", v.Overlap, err)
	}
	b, _ := json.Marshal(v)
	if string(b) != `{"Overlap":"replace"}` {
		t.Fatalf("marshal: %s", b)
	}
	if err := json.Unmarshal([]byte(`{"Overlap":"queue"}`), &v); err == nil || !strings.Contains(err.Error(), "use skip, allow or replace") {
		t.Fatalf("bad overlap: %v", err)
	}
}

// A job's JSON is what the store keeps and the admin API takes: the names
// the controller's CronJob had before it became this type, no service
// (a job is kept under its service), the timeout as nanoseconds or "30s".
func TestJobJSON(t *testing.T) {
	j := Job{Service: "web", Name: "nightly", Schedule: "@daily", Method: "POST", Path: "/x", Body: "b",
		Header: http.Header{"X-A": {"1"}}, TimeZone: "Europe/Berlin", Timeout: duration.Duration(30 * time.Second), Retries: 2, Overlap: OverlapReplace}
	b, err := json.Marshal(j)
	want := `{"name":"nightly","schedule":"@daily","method":"POST","path":"/x","body":"b","header":{"X-A":["1"]},"tz":"Europe/Berlin","timeout":30000000000,"retries":2,"overlap":"replace"}`
	if err != nil || string(b) != want {
		t.Fatalf("%s, %v\nwant %s", b, err, want)
	}
	var back Job
	if err := json.Unmarshal([]byte(`{"schedule":"@daily","path":"/x","timeout":"1m"}`), &back); err != nil || time.Duration(back.Timeout) != time.Minute {
		t.Fatalf("timeout \"1m\": %v, %v", back.Timeout, err)
	}
	if b, _ := json.Marshal(Job{Schedule: "@hourly", Path: "/"}); string(b) != `{"schedule":"@hourly","path":"/"}` {
		t.Errorf("a declared job with defaults unset: %s", b)
	}
}
