package observe

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEventsRingNewestFirst(t *testing.T) {
	e := NewEvents(3)
	t0 := time.Now()
	for i := range 5 {
		e.Add(Event{Time: t0.Add(time.Duration(i) * time.Second), Service: "web", Kind: KindHTTP5xx, Message: fmt.Sprint(i)})
	}
	e.Add(Event{Time: t0.Add(2500 * time.Millisecond), Service: "api", Kind: KindCrash, Message: "api"})
	var got []string
	for _, ev := range e.List("web") {
		got = append(got, ev.Message)
	}
	if fmt.Sprint(got) != "[4 3 2]" {
		t.Errorf("web's events = %v, want the last three, newest first", got)
	}
	got = nil
	for _, ev := range e.List("") {
		got = append(got, ev.Message)
	}
	if fmt.Sprint(got) != "[4 3 api 2]" {
		t.Errorf("all events = %v, want both services by time, newest first", got)
	}
	if l := e.List("nope"); len(l) != 0 {
		t.Errorf("an unknown service has events %v", l)
	}
	e.Add(Event{Service: "api", Kind: KindCrash})
	if ev := e.List("api")[0]; time.Since(ev.Time) > time.Minute {
		t.Errorf("an event without a time got %v, want now", ev.Time)
	}
}

func TestEventsJSON(t *testing.T) {
	zero := 0
	b, err := json.Marshal(Event{Service: "web", Kind: KindCrash, Instance: "abc", Message: "exited", ExitCode: &zero, Logs: []string{"bye"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"crash"`, `"exit_code":0`, `"logs":["bye"]`, `"instance":"abc"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	b, _ = json.Marshal(Event{Service: "web", Kind: KindHTTP5xx, Status: 502})
	if strings.Contains(string(b), "exit_code") || !strings.Contains(string(b), `"status":502`) {
		t.Errorf("%s: want a status and no exit code", b)
	}
}
