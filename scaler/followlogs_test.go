package scaler

import (
	"testing"
	"time"
)

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
