package caddymodule

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/podcell/podcell/caddymodule/controller"
	"github.com/podcell/podcell/caddymodule/cron"
)

// The cron lines of a podcell block become the handler's JSON and back,
// so `caddy adapt` output loads as the Caddyfile does.
func TestCronCaddyfileRoundTrip(t *testing.T) {
	d := caddyfile.NewTestDispenser(`podcell hello {
		image localhost/hello:latest
		cron "0 3 * * *" post /tasks/cleanup
		cron @weekly POST /tasks/report ` + "`" + `{"full": true}` + "`" + ` {
			name weekly-report
			tz Europe/Berlin
			timeout 5m
			retries 3
			overlap replace
			header Content-Type application/json
		}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := []cron.Job{
		{Schedule: "0 3 * * *", Method: "POST", Path: "/tasks/cleanup"},
		{Name: "weekly-report", Schedule: "@weekly", Method: "POST", Path: "/tasks/report", Body: `{"full": true}`,
			Header: http.Header{"Content-Type": {"application/json"}}, TimeZone: "Europe/Berlin",
			Timeout: controller.Duration(5 * time.Minute), Retries: 3, Overlap: cron.OverlapReplace},
	}
	if !reflect.DeepEqual(h.Cron, want) {
		t.Fatalf("parsed %+v\nwant   %+v", h.Cron, want)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Handler
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if !reflect.DeepEqual(back.Cron, want) {
		t.Fatalf("after JSON %s:\n%+v", b, back.Cron)
	}
	j := h.Cron[0].For("hello")
	if j.Name != cron.DefaultName("0 3 * * *", "/tasks/cleanup") || j.TimeZone != "UTC" || j.Timeout != controller.Duration(time.Minute) || j.Overlap != cron.OverlapSkip {
		t.Errorf("defaults: %+v", j)
	}
}

func TestCronLinesRefused(t *testing.T) {
	cases := map[string]string{
		`podcell { 
			hosts *.apps.localhost
			cron @daily GET /x
		}`: "not in host mode",
		`podcell a {
			image x
			cron */5 * * * * GET /x
		}`: "quote the schedule",
		`podcell a {
			image x
			cron @daily GET /x {
				every day
			}
		}`: `unknown cron option "every"`,
		`podcell a {
			image x
			cron @daily GET /x
			cron @daily GET /x
		}`: "is declared twice",
	}
	for in, want := range cases {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n%v, want an error saying %q", in, err, want)
		}
	}
}
