package cron

import (
	"testing"
	"time"

	"github.com/podcell/podcell/caddymodule/internal/duration"
)

func mustSchedule(t *testing.T, expr, tz string) schedule {
	t.Helper()
	s, err := parseSchedule(expr, mustLoc(t, tz))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fires returns the n fire times after from.
func fires(s schedule, from time.Time, n int) []time.Time {
	var out []time.Time
	for range n {
		from = s.next(from)
		out = append(out, from)
	}
	return out
}

func checkFires(t *testing.T, expr, tz string, from time.Time, want ...string) {
	t.Helper()
	got := fires(mustSchedule(t, expr, tz), from, len(want))
	for i, w := range want {
		if g := got[i].Format(time.RFC3339); g != w {
			t.Errorf("%q in %s from %s: fire %d is %s, want %s (all: %v)", expr, tz, from, i, g, w, got)
		}
	}
}

func TestNextInTimeZone(t *testing.T) {
	utc := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	// 09:00 in Tokyo is midnight UTC; 09:30 JST has passed, so tomorrow.
	checkFires(t, "0 9 * * *", "Asia/Tokyo", utc("2024-06-01T00:30:00Z"), "2024-06-02T09:00:00+09:00", "2024-06-03T09:00:00+09:00")
	// New York is UTC-5 in January and UTC-4 in July.
	checkFires(t, "0 9 * * *", "America/New_York", utc("2024-01-15T12:00:00Z"), "2024-01-15T09:00:00-05:00")
	checkFires(t, "0 9 * * *", "America/New_York", utc("2024-07-15T12:00:00Z"), "2024-07-15T09:00:00-04:00")
	checkFires(t, "0 9 * * *", "UTC", utc("2024-07-15T12:00:00Z"), "2024-07-16T09:00:00Z")
	// Weekdays are the zone's: Monday 00:30 in Berlin is still Sunday in UTC.
	checkFires(t, "30 0 * * mon", "Europe/Berlin", utc("2024-06-01T00:00:00Z"), "2024-06-03T00:30:00+02:00")
	checkFires(t, "@every 90s", "UTC", utc("2024-06-01T00:00:00.5Z"), "2024-06-01T00:01:30Z", "2024-06-01T00:03:00Z")
	checkFires(t, "@monthly", "Europe/Berlin", utc("2024-06-15T00:00:00Z"), "2024-07-01T00:00:00+02:00", "2024-08-01T00:00:00+02:00")
}

// Spring forward: 02:00 local becomes 03:00 (New York 2024-03-10, Berlin
// 2024-03-31). A fixed-time job whose time does not exist runs once when
// the gap ends; robfig alone would skip it that day.
func TestDSTSpringForward(t *testing.T) {
	ny, berlin := mustLoc(t, "America/New_York"), mustLoc(t, "Europe/Berlin")
	checkFires(t, "30 2 * * *", "America/New_York", time.Date(2024, 3, 9, 12, 0, 0, 0, ny),
		"2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00")
	checkFires(t, "30 2 * * *", "Europe/Berlin", time.Date(2024, 3, 30, 12, 0, 0, 0, berlin),
		"2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00")
	// Several times in the gap, and 03:00 itself, fold into one run.
	checkFires(t, "*/20 2,3 * * *", "America/New_York", time.Date(2024, 3, 10, 0, 0, 0, 0, ny),
		"2024-03-10T03:00:00-04:00", "2024-03-10T03:20:00-04:00", "2024-03-10T03:40:00-04:00", "2024-03-11T02:00:00-04:00")
	// Times outside the gap are not moved.
	checkFires(t, "0 3 * * *", "America/New_York", time.Date(2024, 3, 9, 12, 0, 0, 0, ny),
		"2024-03-10T03:00:00-04:00", "2024-03-11T03:00:00-04:00")
	checkFires(t, "30 1 * * *", "America/New_York", time.Date(2024, 3, 9, 12, 0, 0, 0, ny),
		"2024-03-10T01:30:00-05:00", "2024-03-11T01:30:00-04:00")
	// An hourly job keeps its real-time cadence: 01:30 EST to 03:30 EDT is
	// one hour.
	checkFires(t, "30 * * * *", "America/New_York", time.Date(2024, 3, 10, 0, 45, 0, 0, ny),
		"2024-03-10T01:30:00-05:00", "2024-03-10T03:30:00-04:00", "2024-03-10T04:30:00-04:00")
}

// Fall back: 02:00 local becomes 01:00 again (New York 2024-11-03), 03:00
// becomes 02:00 (Berlin 2024-10-27). A fixed-time job in the repeated hour
// runs once, at the first occurrence.
func TestDSTFallBack(t *testing.T) {
	ny, berlin := mustLoc(t, "America/New_York"), mustLoc(t, "Europe/Berlin")
	checkFires(t, "30 1 * * *", "America/New_York", time.Date(2024, 11, 2, 12, 0, 0, 0, ny),
		"2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00")
	checkFires(t, "30 2 * * *", "Europe/Berlin", time.Date(2024, 10, 26, 12, 0, 0, 0, berlin),
		"2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00")
	checkFires(t, "*/20 1 * * *", "America/New_York", time.Date(2024, 11, 3, 0, 0, 0, 0, ny),
		"2024-11-03T01:00:00-04:00", "2024-11-03T01:20:00-04:00", "2024-11-03T01:40:00-04:00", "2024-11-04T01:00:00-05:00")
	// Waking inside the repeated hour (after the first 01:30 ran) must not
	// find 01:30 again that day.
	inRepeat := time.Date(2024, 11, 3, 6, 10, 0, 0, time.UTC) // 01:10 EST, the second 01:10
	checkFires(t, "30 1 * * *", "America/New_York", inRepeat, "2024-11-04T01:30:00-05:00")
	// An hourly job runs in both copies of the hour, an hour apart.
	checkFires(t, "30 * * * *", "America/New_York", time.Date(2024, 11, 3, 0, 45, 0, 0, ny),
		"2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00", "2024-11-03T02:30:00-05:00")
}

func TestCatchUp(t *testing.T) {
	t0 := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	s := mustSchedule(t, "*/5 * * * *", "UTC")
	latest, missed, next := s.catchUp(t0.Add(5*time.Minute), t0.Add(10*time.Hour+2*time.Minute))
	if !latest.Equal(t0.Add(10*time.Hour)) || missed != 119 || !next.Equal(t0.Add(10*time.Hour+5*time.Minute)) {
		t.Errorf("cron: latest %s missed %d next %s", latest, missed, next)
	}
	latest, missed, next = s.catchUp(t0.Add(5*time.Minute), t0.Add(5*time.Minute+time.Second))
	if !latest.Equal(t0.Add(5*time.Minute)) || missed != 0 || !next.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("on time: latest %s missed %d next %s", latest, missed, next)
	}
	e := mustSchedule(t, "@every 1h", "UTC")
	latest, missed, next = e.catchUp(t0.Add(time.Hour), t0.Add(30*time.Hour+time.Minute))
	if !latest.Equal(t0.Add(30*time.Hour)) || missed != 29 || !next.Equal(t0.Add(31*time.Hour)) {
		t.Errorf("every: latest %s missed %d next %s", latest, missed, next)
	}
	// A minutely job asleep for a year: bounded walk, next is after now.
	now := t0.AddDate(1, 0, 0)
	m := mustSchedule(t, "* * * * *", "UTC")
	start := time.Now()
	_, missed, next = m.catchUp(t0, now)
	if missed != maxWalk || !next.After(now) || next.After(now.Add(time.Minute)) {
		t.Errorf("long sleep: missed %d next %s", missed, next)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("long sleep walk took %s", d)
	}
}

func TestBudget(t *testing.T) {
	now := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	j := Job{Timeout: duration.Duration(10 * time.Second), Retries: 5}
	for _, tc := range []struct {
		next time.Time
		want time.Duration
	}{
		{now.Add(2 * time.Minute), time.Minute},       // timeout × (retries+1)
		{now.Add(30 * time.Second), 30 * time.Second}, // the next tick comes first
		{now.Add(time.Second), 10 * time.Second},      // still one full attempt
		{time.Time{}, time.Minute},                    // no next tick
	} {
		if got := budget(j, now, tc.next); got != tc.want {
			t.Errorf("next %s: budget %s, want %s", tc.next, got, tc.want)
		}
	}
}
