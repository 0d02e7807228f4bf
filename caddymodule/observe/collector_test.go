package observe

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/podcell/podcell/scaler"
)

// streamRuntime is a Runtime whose FollowLogs plays lines a test feeds it;
// nothing else of the Runtime is used by the collector.
type streamRuntime struct {
	scaler.Runtime

	mu      sync.Mutex
	streams map[string]chan scaler.LogLine // closed: the container stopped
	fail    map[string]int                 // break this many follows first
	sinces  map[string][]time.Time
}

func newStreamRuntime() *streamRuntime {
	return &streamRuntime{streams: map[string]chan scaler.LogLine{}, fail: map[string]int{}, sinces: map[string][]time.Time{}}
}

func (r *streamRuntime) stream(id string) chan scaler.LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.streams[id] == nil {
		r.streams[id] = make(chan scaler.LogLine, 100)
	}
	return r.streams[id]
}

func (r *streamRuntime) FollowLogs(ctx context.Context, id string, since time.Time, fn func(scaler.LogLine)) error {
	ch := r.stream(id)
	r.mu.Lock()
	r.sinces[id] = append(r.sinces[id], since)
	broken := r.fail[id] > 0
	if broken {
		r.fail[id]--
	}
	r.mu.Unlock()
	if broken {
		return errors.New("stream broke")
	}
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				return nil
			}
			if l.Text == "BREAK" {
				return errors.New("stream broke")
			}
			fn(l)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCollectorCopiesUntilTheStreamEnds(t *testing.T) {
	rt := newStreamRuntime()
	logs := NewLogs(0)
	c := NewCollector(rt, logs)
	defer c.Close()
	id := "0123456789abcdef"
	c.Follow("web", id)
	c.Follow("web", id) // once is enough
	at := time.Now()
	rt.stream(id) <- scaler.LogLine{Time: at, Stream: "stderr", Text: "hello"}
	waitUntil(t, "a line copied", func() bool { return len(logs.Recent("web", 0)) == 1 })
	got := logs.Recent("web", 0)[0]
	if got.Service != "web" || got.Instance != "0123456789ab" || got.Stream != "stderr" || got.Text != "hello" || !got.Time.Equal(at) {
		t.Errorf("copied %+v, want web's stderr line from instance 0123456789ab", got)
	}
	close(rt.stream(id))
	waitUntil(t, "the follow to end with its container", func() bool { return len(c.Following()) == 0 })
	rt.mu.Lock()
	n := len(rt.sinces[id])
	rt.mu.Unlock()
	if n != 1 {
		t.Errorf("followed %d times, want once", n)
	}
}

func TestCollectorStop(t *testing.T) {
	rt := newStreamRuntime()
	logs := NewLogs(0)
	c := NewCollector(rt, logs)
	defer c.Close()
	c.Follow("web", "a")
	c.Follow("web", "b")
	waitUntil(t, "two follows", func() bool { return len(c.Following()) == 2 })
	c.Stop("a")
	waitUntil(t, "a's follow to end", func() bool { return slices.Equal(c.Following(), []string{"b"}) })
	rt.stream("b") <- scaler.LogLine{Time: time.Now(), Stream: "stdout", Text: "still here"}
	waitUntil(t, "b's line", func() bool { return logs.Has("web") })
	c.Close()
	if f := c.Following(); len(f) != 0 {
		t.Errorf("following %v after Close", f)
	}
	c.Follow("web", "c")
	if f := c.Following(); len(f) != 0 {
		t.Errorf("Follow after Close started %v", f)
	}
}

// A stream that breaks while the container runs is followed again from
// after the last line; one that keeps failing is given up.
func TestCollectorResumesABrokenStream(t *testing.T) {
	defer func(d time.Duration) { retryEvery = d }(retryEvery)
	retryEvery = time.Millisecond
	rt := newStreamRuntime()
	logs := NewLogs(0)
	c := NewCollector(rt, logs)
	defer c.Close()
	at := time.Now()
	ch := rt.stream("a")
	ch <- scaler.LogLine{Time: at, Stream: "stdout", Text: "one"}
	ch <- scaler.LogLine{Text: "BREAK"}
	ch <- scaler.LogLine{Time: at.Add(time.Second), Stream: "stdout", Text: "two"}
	c.Follow("web", "a")
	waitUntil(t, "both lines", func() bool { return len(logs.Recent("web", 0)) == 2 })
	rt.mu.Lock()
	sinces := slices.Clone(rt.sinces["a"])
	rt.mu.Unlock()
	if len(sinces) != 2 || !sinces[0].IsZero() || !sinces[1].Equal(at.Add(time.Nanosecond)) {
		t.Errorf("followed since %v, want from the start, then just after the first line", sinces)
	}

	rt.mu.Lock()
	rt.fail["gone"] = 100
	rt.mu.Unlock()
	c.Follow("web", "gone")
	waitUntil(t, "a failing follow to be given up", func() bool { return !slices.Contains(c.Following(), "gone") })
	rt.mu.Lock()
	tries := len(rt.sinces["gone"])
	rt.mu.Unlock()
	if tries != maxRetries {
		t.Errorf("tried %d times, want %d", tries, maxRetries)
	}
}
