package observe

import (
	"context"
	"sync"
	"time"

	"github.com/podcell/podcell/scaler"
)

// Collector copies the output of running instances into Logs: it follows
// an instance's log stream from when it starts until it is removed.
type Collector struct {
	rt   scaler.Runtime
	logs *Logs

	mu      sync.Mutex
	follows map[string]*following // by container id
	closed  bool
	wg      sync.WaitGroup
}

// retryEvery is how long the collector waits before following an
// instance's output again after the stream broke while it ran.
var retryEvery = time.Second

// maxRetries bounds the attempts in a row that get no line, so a
// container that is gone without the collector being told is given up.
const maxRetries = 5

// NewCollector follows instances through rt into logs.
func NewCollector(rt scaler.Runtime, logs *Logs) *Collector {
	return &Collector{rt: rt, logs: logs, follows: map[string]*following{}}
}

type following struct{ cancel context.CancelFunc }

// Follow starts copying the output of container id of service, from its
// first line, unless it is already being followed. It returns at once.
func (c *Collector) Follow(service, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.follows[id] != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &following{cancel: cancel}
	c.follows[id] = f
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		c.follow(ctx, service, id)
		c.mu.Lock()
		if c.follows[id] == f {
			delete(c.follows, id)
		}
		c.mu.Unlock()
	}()
}

// Stop ends following container id; lines already copied stay.
func (c *Collector) Stop(id string) {
	c.mu.Lock()
	f := c.follows[id]
	delete(c.follows, id)
	c.mu.Unlock()
	if f != nil {
		f.cancel()
	}
}

// Following lists the ids of the containers being followed.
func (c *Collector) Following() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.follows))
	for id := range c.follows {
		ids = append(ids, id)
	}
	return ids
}

// Close stops following every container and waits for the copying to end.
func (c *Collector) Close() {
	c.mu.Lock()
	c.closed = true
	for id, f := range c.follows {
		f.cancel()
		delete(c.follows, id)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// follow copies until the stream ends with the container or ctx ends. A
// stream that breaks while the container runs (the engine restarted, say)
// is picked up again after the last line copied.
func (c *Collector) follow(ctx context.Context, service, id string) {
	short := shortID(id)
	var since time.Time
	for failures := 0; failures < maxRetries; failures++ {
		err := c.rt.FollowLogs(ctx, id, since, func(l scaler.LogLine) {
			failures = 0
			since = l.Time.Add(time.Nanosecond)
			c.logs.Add(Line{Time: l.Time, Service: service, Instance: short, Stream: l.Stream, Text: l.Text})
		})
		if err == nil || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryEvery):
		}
	}
}

// shortID is a container id as Podman shows it: its first 12 characters.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
