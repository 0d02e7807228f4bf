package builder

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxLineBytes cuts overlong log lines (minified output, progress dumps).
const maxLineBytes = 8 << 10

// logSink is the io.Writer clone progress and build output go to. It splits
// the stream into lines, hands each to the caller's callback as soon as it
// is complete and keeps the last max of them. A carriage return without a
// newline (a progress bar redrawing itself) replaces the line so far, so
// only the final state of such a line is kept.
type logSink struct {
	mu      sync.Mutex
	fn      func(string)
	observe func(line string, at time.Time)
	max     int
	lines   []string
	dropped int
	cur     []byte
	cr      bool // the last byte seen was '\r'
	closed  bool
}

func newLogSink(fn func(string), max int) *logSink {
	return &logSink{fn: fn, max: max}
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range p {
		if s.cr {
			s.cr = false
			if c != '\n' {
				s.cur = s.cur[:0] // redrawn: drop what the \r ended
			}
		}
		switch c {
		case '\n':
			s.emitLocked()
		case '\r':
			s.cr = true
		default:
			if len(s.cur) < maxLineBytes {
				s.cur = append(s.cur, c)
			}
		}
	}
	return len(p), nil
}

// flush emits a last line that has no newline yet.
func (s *logSink) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cr = false
	if len(s.cur) > 0 {
		s.emitLocked()
	}
}

func (s *logSink) printf(format string, args ...any) {
	s.flush()
	fmt.Fprintf(s, format+"\n", args...)
}

func (s *logSink) emitLocked() {
	line := string(s.cur)
	if len(s.cur) >= maxLineBytes {
		line += " [line cut]"
	}
	s.cur = s.cur[:0]
	if s.closed {
		return
	}
	if s.observe != nil {
		s.observe(line, time.Now())
	}
	if len(s.lines) >= s.max {
		n := len(s.lines) - s.max + 1
		s.lines = append(s.lines[:0], s.lines[n:]...)
		s.dropped += n
	}
	s.lines = append(s.lines, line)
	if s.fn != nil {
		s.fn(line)
	}
}

// snapshot returns a copy of the kept lines and how many were dropped.
func (s *logSink) snapshot() ([]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...), s.dropped
}

// close stops the callback: nothing written after Build returns reaches it.
func (s *logSink) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

var (
	stepRE  = regexp.MustCompile(`^STEP (\d+)(?:/(\d+))?: (.*)$`)
	cacheRE = regexp.MustCompile(`^--> Using cache [0-9a-f]+`)
)

// stepTracker follows the build output's "STEP n/m: ..." lines to time each
// step and see which came from the cache.
type stepTracker struct {
	purposes []string
	steps    []Step
	total    int
	began    time.Time // of the current step
	open     bool
}

func (t *stepTracker) line(l string, at time.Time) {
	if m := stepRE.FindStringSubmatch(l); m != nil {
		t.finish(at)
		n, _ := strconv.Atoi(m[1])
		if m[2] != "" {
			t.total, _ = strconv.Atoi(m[2])
		}
		s := Step{Number: n, Instruction: m[3]}
		if n >= 1 && n <= len(t.purposes) {
			s.Purpose = t.purposes[n-1]
		}
		t.steps = append(t.steps, s)
		t.began, t.open = at, true
		return
	}
	if !t.open {
		return
	}
	switch {
	case cacheRE.MatchString(l):
		t.steps[len(t.steps)-1].Cached = true
	case strings.HasPrefix(l, "COMMIT"):
		t.finish(at)
	}
}

// finish ends the current step at at.
func (t *stepTracker) finish(at time.Time) {
	if t.open {
		t.steps[len(t.steps)-1].Duration = at.Sub(t.began)
		t.open = false
	}
}

// current is the last step begun: the failing one when a build fails.
func (t *stepTracker) current() *Step {
	if len(t.steps) == 0 {
		return nil
	}
	return &t.steps[len(t.steps)-1]
}
