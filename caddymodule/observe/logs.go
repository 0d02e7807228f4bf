package observe

import (
	"sync"
	"time"
	"unicode/utf8"
)

// Line is one line of a service's output.
type Line struct {
	Time     time.Time `json:"time"`
	Service  string    `json:"service"`
	Instance string    `json:"instance"` // short container id
	Stream   string    `json:"stream"`   // "stdout" or "stderr"; "podcell" for podcell's own hints
	Text     string    `json:"text"`
	// Dropped counts the lines a follower missed just before this one
	// because it read too slowly.
	Dropped int `json:"dropped,omitempty"`
}

// Logs keeps the recent output of each service, across its instances'
// lives, and hands new lines to followers.
type Logs struct {
	keep int

	mu       sync.Mutex
	services map[string]*serviceLog
	closed   bool
}

// serviceLog is a ring of a service's last lines and its followers.
type serviceLog struct {
	lines     []Line // grows to keep, then wraps at next
	next      int
	followers map[*follower]struct{}
}

type follower struct {
	ch      chan Line
	dropped int
}

// DefaultKeptLines is how many lines per service Logs keeps by default.
const DefaultKeptLines = 2000

// maxLineText bounds a kept line, so a service's ring stays within
// keep × 4 KiB however long its lines are.
const maxLineText = 4 << 10

// followerBuffer is how many lines a follower may lag behind before lines
// are dropped for it.
const followerBuffer = 256

// NewLogs keeps up to keep lines per service (DefaultKeptLines if keep <= 0).
func NewLogs(keep int) *Logs {
	if keep <= 0 {
		keep = DefaultKeptLines
	}
	return &Logs{keep: keep, services: map[string]*serviceLog{}}
}

func (l *Logs) serviceLocked(name string) *serviceLog {
	sl := l.services[name]
	if sl == nil {
		sl = &serviceLog{followers: map[*follower]struct{}{}}
		l.services[name] = sl
	}
	return sl
}

// Add keeps line and passes it to the service's followers. It never
// blocks: a follower whose buffer is full misses the line, and the next
// line it gets says how many it missed.
func (l *Logs) Add(line Line) {
	line.Text = truncate(line.Text, maxLineText)
	line.Dropped = 0
	l.mu.Lock()
	defer l.mu.Unlock()
	sl := l.serviceLocked(line.Service)
	if len(sl.lines) < l.keep {
		sl.lines = append(sl.lines, line)
	} else {
		sl.lines[sl.next] = line
		sl.next = (sl.next + 1) % l.keep
	}
	for f := range sl.followers {
		out := line
		out.Dropped = f.dropped
		select {
		case f.ch <- out:
			f.dropped = 0
		default:
			f.dropped++
		}
	}
}

// Recent returns up to n of the service's last lines, oldest first (all
// kept lines if n <= 0).
func (l *Logs) Recent(service string, n int) []Line {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recentLocked(service, n)
}

func (l *Logs) recentLocked(service string, n int) []Line {
	sl := l.services[service]
	if sl == nil {
		return nil
	}
	all := make([]Line, 0, len(sl.lines))
	all = append(all, sl.lines[sl.next:]...)
	all = append(all, sl.lines[:sl.next]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// Has reports whether any line of the service is kept.
func (l *Logs) Has(service string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	sl := l.services[service]
	return sl != nil && len(sl.lines) > 0
}

// Subscribe returns the service's kept lines and a channel of the lines
// that come after them. cancel ends the subscription and closes the
// channel; so does Close.
func (l *Logs) Subscribe(service string) (recent []Line, ch <-chan Line, cancel func()) {
	f := &follower{ch: make(chan Line, followerBuffer)}
	l.mu.Lock()
	defer l.mu.Unlock()
	recent = l.recentLocked(service, 0)
	if l.closed {
		close(f.ch)
		return recent, f.ch, func() {}
	}
	sl := l.serviceLocked(service)
	sl.followers[f] = struct{}{}
	var once sync.Once
	cancel = func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if _, ok := sl.followers[f]; ok {
				delete(sl.followers, f)
				close(f.ch)
			}
		})
	}
	return recent, f.ch, cancel
}

// Close ends every subscription; lines added later are still kept.
func (l *Logs) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, sl := range l.services {
		for f := range sl.followers {
			delete(sl.followers, f)
			close(f.ch)
		}
	}
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
