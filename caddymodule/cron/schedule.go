package cron

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // tz works on hosts and containers without /usr/share/zoneinfo

	robfig "github.com/robfig/cron/v3"
)

const scheduleHelp = "use 5 fields (minute hour day-of-month month day-of-week) or @hourly/@daily/@weekly/@monthly/@yearly/@every <duration>"

// parser is robfig's standard parser: 5 fields, descriptors and @every.
var parser = robfig.NewParser(robfig.Minute | robfig.Hour | robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// schedule computes a job's fire times in its time zone.
//
// robfig's SpecSchedule.Next works on real instants, so around daylight
// saving changes it skips a daily job whose time falls in the
// spring-forward gap and fires it twice in the fall-back repeat. For
// schedules that name particular hours (wall is true) next evaluates the
// expression on local wall-clock times instead, the rule Vixie cron
// follows: each matching local time fires once, at its first occurrence,
// and the matching times in a gap fire once, when the gap ends.
// Schedules that run every hour keep robfig's real-time behaviour, so
// their cadence stays even across a change.
type schedule struct {
	spec  *robfig.SpecSchedule // nil for @every
	every time.Duration
	loc   *time.Location
	wall  bool
}

func parseSchedule(expr string, loc *time.Location) (schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return schedule{}, fmt.Errorf("is empty: %s", scheduleHelp)
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return schedule{}, fmt.Errorf("set the time zone with tz, not in the schedule")
	}
	parsed, err := parser.Parse(expr)
	if err != nil {
		return schedule{}, fmt.Errorf("%v: %s", err, scheduleHelp)
	}
	switch p := parsed.(type) {
	case *robfig.SpecSchedule:
		const allHours = 1<<24 - 1
		s := schedule{spec: p, loc: loc, wall: p.Hour&allHours != allHours}
		if s.next(time.Now()).IsZero() {
			return schedule{}, fmt.Errorf("never fires (a day that does not exist, such as February 30?)")
		}
		return s, nil
	case robfig.ConstantDelaySchedule:
		// robfig rounds a bad duration up to a second; say so instead.
		d, _ := time.ParseDuration(strings.TrimPrefix(expr, "@every "))
		if d < time.Second || d%time.Second != 0 {
			return schedule{}, fmt.Errorf("@every needs a whole number of seconds, at least 1s")
		}
		return schedule{every: d, loc: loc}, nil
	}
	return schedule{}, fmt.Errorf("unsupported schedule type %T: %s", parsed, scheduleHelp)
}

// next returns the first fire time after t, or the zero time if there is
// none within five years.
func (s schedule) next(t time.Time) time.Time {
	if s.spec == nil {
		// Whole seconds, like robfig's Every.
		return t.Add(s.every - time.Duration(t.Nanosecond()))
	}
	if !s.wall {
		return s.spec.Next(t.In(s.loc))
	}
	// Local wall-clock times, written as UTC (which has no DST), step
	// forward one match at a time; a match that maps to an instant not
	// after t was already due (the second copy of a repeated hour, or a
	// gap time folded into its end).
	w := wallClock(t.In(s.loc))
	for range 100 {
		w = s.spec.Next(w)
		if w.IsZero() {
			return w
		}
		if at := resolve(w, s.loc); at.After(t) {
			return at
		}
	}
	return time.Time{}
}

// wallClock is t's local date and time as a UTC time.
func wallClock(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// resolve returns the first instant whose local time in loc is the wall
// time w (given as UTC), or, when w falls in a spring-forward gap, the
// instant the gap ends. time.Date picks either offset in both cases.
func resolve(w time.Time, loc *time.Location) time.Time {
	t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
	if !wallClock(t).Equal(w) {
		// In a gap: t is on one side of the transition.
		start, end := t.ZoneBounds()
		if wallClock(t).Before(w) {
			return end
		}
		return start
	}
	// In a fall-back repeat the same wall time also exists in the zone
	// period before t's.
	start, _ := t.ZoneBounds()
	if !start.IsZero() {
		_, off := start.Add(-time.Nanosecond).Zone()
		earlier := w.Add(-time.Duration(off) * time.Second).In(loc)
		if earlier.Before(start) && wallClock(earlier).Equal(w) {
			return earlier
		}
	}
	return t
}

// maxWalk bounds catchUp's walk over missed fire times (a minutely job
// missed for 70 days), so a long sleep costs no more than a moment.
const maxWalk = 100000

// catchUp walks the fire times from due, which is not after now. It
// returns the latest one not after now, how many fire times came before
// it, and the next one after now.
func (s schedule) catchUp(due, now time.Time) (latest time.Time, missed int, next time.Time) {
	if s.spec == nil {
		n := int(now.Sub(due) / s.every)
		latest = due.Add(time.Duration(n) * s.every)
		return latest, n, s.next(latest)
	}
	latest = due
	for ; missed < maxWalk; missed++ {
		nx := s.next(latest)
		if nx.IsZero() || nx.After(now) {
			return latest, missed, nx
		}
		latest = nx
	}
	// Too far behind to walk to now: latest is then older than the last
	// fire time, but still only one run happens.
	return latest, missed, s.next(now)
}
