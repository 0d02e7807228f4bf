package observe

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Real sequences, as npm, pip, chalk and terminal hyperlinks write them.
func TestStripANSI(t *testing.T) {
	for in, want := range map[string]string{
		"plain text": "plain text",
		"\x1b[32mready\x1b[39m on \x1b[1m:8080\x1b[22m":       "ready on :8080",
		"\x1b[38;5;208morange\x1b[0m":                         "orange",
		"\x1b[38;2;255;0;0mred\x1b[m":                         "red",
		"npm \x1b[33mWARN\x1b[39m deprecated":                 "npm WARN deprecated",
		"\x1b[2K\x1b[1Gprogress":                              "progress",
		"\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\": "link",
		"\x1b]0;title\x07after":                               "after",
		"\x1b(Bcharset \x1b=keypad":                           "charset keypad",
		"unterminated \x1b[31":                                "unterminated ",
		"trailing escape \x1b":                                "trailing escape ",
		"naïve \x1b[1mbold\x1b[0m ünïcödé":                    "naïve bold ünïcödé",
	} {
		if got := StripANSI(in); got != want {
			t.Errorf("StripANSI(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { StripANSI("a line without escapes, as most are") }); n != 0 {
		t.Errorf("a plain line costs %v allocations", n)
	}
}

// The logs endpoint strips colour codes unless ?color=1; the kept lines
// and the events' output are the app's as written, the events' stripped.
func TestLogsEndpointStripsColours(t *testing.T) {
	h := NewHub(nil)
	raw := "\x1b[32minfo\x1b[39m: listening on \x1b[1m0.0.0.0:8080\x1b[22m"
	h.Logs.Add(Line{Time: time.Now(), Service: "web", Instance: "abc", Stream: "stdout", Text: raw})
	h.Events.Add(Event{Service: "web", Kind: KindCrash, Message: "exited", Logs: []string{"ok", raw}})
	srv := newTestServer(t, h)
	text := func(query string) string {
		_, body := get(t, srv.URL+"/podcell/services/web/logs"+query)
		var l Line
		if err := json.Unmarshal([]byte(strings.TrimSpace(body)), &l); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		return l.Text
	}
	if got := text(""); got != "info: listening on 0.0.0.0:8080" {
		t.Errorf("logs: %q, want the colour codes stripped", got)
	}
	if got := text("?color=1"); got != raw {
		t.Errorf("logs?color=1: %q, want the line as the app wrote it", got)
	}
	_, body := get(t, srv.URL+"/podcell/events?service=web")
	var evs []Event
	if err := json.Unmarshal([]byte(body), &evs); err != nil || len(evs) != 1 || evs[0].Logs[1] != "info: listening on 0.0.0.0:8080" {
		t.Errorf("events %q: want the output stripped", body)
	}
	if kept := h.Events.List("web"); kept[0].Logs[1] != raw {
		t.Errorf("the kept event changed: %q", kept[0].Logs[1])
	}
}
