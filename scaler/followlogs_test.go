package scaler

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestFakeFollowLogs(t *testing.T) {
	f := newFake(t)
	ctx := context.Background()
	id, err := f.Create(ctx, ContainerSpec{Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.write(id, "stdout", "before")
	since := time.Now()
	f.write(id, "stderr", "after")

	got := make(chan LogLine, 10)
	done := make(chan error, 1)
	go func() { done <- f.FollowLogs(ctx, id, since, func(l LogLine) { got <- l }) }()
	next := func() LogLine {
		t.Helper()
		select {
		case l := <-got:
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no line")
			return LogLine{}
		}
	}
	if l := next(); l.Stream != "stderr" || l.Text != "after" {
		t.Errorf("first line %+v, want stderr's \"after\" (the one before since is skipped)", l)
	}
	f.write(id, "stdout", "live")
	if l := next(); l.Stream != "stdout" || l.Text != "live" {
		t.Errorf("second line %+v, want stdout's \"live\"", l)
	}
	f.exit(id, 0)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("FollowLogs after exit: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FollowLogs still follows an exited container")
	}

	// A canceled follow returns ctx's error.
	id2, _ := f.Create(ctx, ContainerSpec{Name: "c2"})
	f.Start(ctx, id2)
	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- f.FollowLogs(cctx, id2, time.Time{}, func(LogLine) {}) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("canceled FollowLogs: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FollowLogs ignores its context")
	}
}

func TestPodmanLogFrame(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)
	cases := []struct {
		frame string
		text  string
		whole bool
		dated bool // the frame's own time, not now
	}{
		{"2026-11-27T10:00:00.123456789Z hello world\n", "hello world", true, true},
		{"2026-11-27T10:00:00.123456789Z part", "part", false, true},
		{"2026-11-27T10:00:00.123456789Z \n", "", true, true},
		{"no time here\n", "no time here", true, false},
	}
	for _, c := range cases {
		ts, text, whole := parseLogFrame(c.frame)
		if text != c.text || whole != c.whole || ts.Equal(at) != c.dated {
			t.Errorf("parseLogFrame(%q) = %v, %q, %v; want text %q, whole %v, dated %v", c.frame, ts, text, whole, c.text, c.whole, c.dated)
		}
	}

	var lines []LogLine
	j := lineJoiner{stream: "stdout", fn: func(l LogLine) { lines = append(lines, l) }}
	j.add("2026-11-27T10:00:00.123456789Z long ")
	j.add("2026-11-27T10:00:01Z line\n")
	j.add("2026-11-27T10:00:02Z tail")
	j.flush()
	if len(lines) != 2 || lines[0].Text != "long line" || !lines[0].Time.Equal(at) || lines[1].Text != "tail" {
		t.Errorf("joined %+v, want \"long line\" at its first part's time, then \"tail\"", lines)
	}
}
