package observe

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func texts(lines []Line) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Text
	}
	return out
}

func numbered(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

func TestLogsKeepsTheLastLinesPerService(t *testing.T) {
	l := NewLogs(5)
	for i := 1; i <= 12; i++ {
		l.Add(Line{Service: "web", Text: fmt.Sprint(i)})
	}
	l.Add(Line{Service: "api", Text: "api 1"})
	if got, want := texts(l.Recent("web", 0)), numbered(8, 12); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("web kept %q, want %q", got, want)
	}
	if got, want := texts(l.Recent("web", 2)), numbered(11, 12); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("web's last 2 = %q, want %q", got, want)
	}
	if got := texts(l.Recent("api", 10)); len(got) != 1 || got[0] != "api 1" {
		t.Errorf("api kept %q, want just its own line", got)
	}
	if got := l.Recent("nope", 10); len(got) != 0 || l.Has("nope") || !l.Has("web") {
		t.Errorf("an unknown service has lines %v", got)
	}
}

func TestLogsTruncatesLongLines(t *testing.T) {
	l := NewLogs(0)
	long := strings.Repeat("é", maxLineText) // two bytes each: a cut can split one
	l.Add(Line{Service: "web", Text: "x" + long})
	got := l.Recent("web", 1)[0].Text
	if len(got) > maxLineText || len(got) < maxLineText-1 || !utf8.ValidString(got) {
		t.Errorf("kept a %d-byte line (valid UTF-8: %v), want at most %d valid bytes", len(got), utf8.ValidString(got), maxLineText)
	}
}

func TestLogsFollowers(t *testing.T) {
	l := NewLogs(3)
	l.Add(Line{Service: "web", Text: "old"})
	recent, ch, cancel := l.Subscribe("web")
	if got := texts(recent); len(got) != 1 || got[0] != "old" {
		t.Errorf("recent = %q, want the kept line", got)
	}
	l.Add(Line{Service: "api", Text: "not mine"})
	l.Add(Line{Service: "web", Text: "new"})
	select {
	case line := <-ch:
		if line.Text != "new" || line.Dropped != 0 {
			t.Errorf("followed %+v, want \"new\" with nothing dropped", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the follower got nothing")
	}
	cancel()
	cancel() // twice is fine
	if _, ok := <-ch; ok {
		t.Error("the channel is open after cancel")
	}
	l.Add(Line{Service: "web", Text: "after cancel"}) // must not panic on a closed channel
}

// A follower that does not read must not hold up the service's output,
// and learns how much it missed.
func TestLogsSlowFollowerDoesNotBlock(t *testing.T) {
	l := NewLogs(10)
	_, slow, cancel := l.Subscribe("web")
	defer cancel()
	total := followerBuffer + 50
	done := make(chan struct{})
	go func() {
		for i := range total {
			l.Add(Line{Service: "web", Text: fmt.Sprint(i)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Add blocks on a follower that does not read")
	}
	// The slow one has its buffer's worth; the rest was dropped for it.
	for i := range followerBuffer {
		if line := <-slow; line.Text != fmt.Sprint(i) || line.Dropped != 0 {
			t.Fatalf("slow follower's line %d = %+v", i, line)
		}
	}
	l.Add(Line{Service: "web", Text: "next"})
	if line := <-slow; line.Text != "next" || line.Dropped != total-followerBuffer {
		t.Errorf("after falling behind: %+v, want \"next\" saying %d lines were dropped", line, total-followerBuffer)
	}
}

func TestLogsCloseEndsFollowers(t *testing.T) {
	l := NewLogs(0)
	_, ch, cancel := l.Subscribe("web")
	l.Close()
	if _, ok := <-ch; ok {
		t.Error("the channel is open after Close")
	}
	cancel() // after Close: no double close
	l.Add(Line{Service: "web", Text: "kept still"})
	recent, ch, _ := l.Subscribe("web")
	if _, ok := <-ch; ok || len(recent) != 1 {
		t.Errorf("Subscribe after Close: %d lines and an open channel, want the kept line and a closed channel", len(recent))
	}
}
