package scaler

import "time"

// Observer is told what a scaler's services go through, for metrics, logs
// and error reports. Some calls come with the service's lock held, which
// requests also take: a method must return quickly (count, append to a
// ring, start a goroutine) and must never call back into the scaler.
// The warm request path (an instance free at once) calls nothing.
type Observer interface {
	// InstanceStarted: a container started and its app answers. took runs
	// from the start call (or the create, without a standby) to ready.
	InstanceStarted(service, id string, took time.Duration)
	// InstanceStarting: container id was started and its app is being
	// waited for (its output is worth following from now: a failed start's
	// is the most useful there is).
	InstanceStarting(service, id string)
	// InstanceSlow: a starting instance's app has not answered yet, and
	// hint says why as far as podcell can tell (it listens on 127.0.0.1
	// only, or on another port than $PORT). At most once per start.
	InstanceSlow(service, id, hint string)
	// InstanceStartFailed: a start gave up; id is "" if no container was
	// made. A streak of failed standby creates (a missing image) reports
	// once, at its first failure; the retries back off quietly.
	InstanceStartFailed(service, id string, err *StartError)
	// InstanceResumed: a paused instance serves again after took.
	InstanceResumed(service, id string, took time.Duration)
	InstancePaused(service, id string)
	// InstanceCrashed: a container the scaler did not stop exited.
	InstanceCrashed(service, id string, c Crash)
	// InstanceRemoved: the scaler removed a container (scale-in, idle,
	// crash, shutdown). It can come for one never reported started (a
	// standby, or one adopted from an earlier run); a failed start reports
	// InstanceStartFailed only.
	InstanceRemoved(service, id string)
	// Scaled: the number of instances up (starting, ready, pausing, paused
	// or resuming) changed.
	Scaled(service string, from, to int)
	// Queued: a request that found no free instance got one after waiting,
	// or gave up; with QueueFull, or QueueFailed during a start backoff, it
	// did not wait at all.
	Queued(service string, waited time.Duration, wake Wake, outcome QueueOutcome)
}

// Crash describes an instance that died on its own.
type Crash struct {
	ExitCode  int
	OOMKilled bool     // by the kernel's OOM killer, as far as the scaler can tell
	Was       string   // its state when it died: "ready", "paused"...
	Logs      []string // its last output lines
}

// QueueOutcome says how a request's wait for an instance ended.
type QueueOutcome int

const (
	QueueServed   QueueOutcome = iota // it got an instance
	QueueFull                         // the queue was full: it did not wait
	QueueTimeout                      // queue_timeout passed
	QueueFailed                       // the instance could not start, or the service closed
	QueueCanceled                     // the client went away
)

func (o QueueOutcome) String() string {
	return [...]string{"served", "full", "timeout", "failed", "canceled"}[o]
}

// InstanceStates lists every state an instance can be in, as Snapshot names
// them, so a report can show the states no instance is in.
func InstanceStates() []string {
	return append([]string(nil), stateNames[:]...)
}

// nopObserver stands in when Options has no Observer, so the scaler calls
// one unconditionally.
type nopObserver struct{}

func (nopObserver) InstanceStarted(string, string, time.Duration)    {}
func (nopObserver) InstanceStarting(string, string)                  {}
func (nopObserver) InstanceSlow(string, string, string)              {}
func (nopObserver) InstanceStartFailed(string, string, *StartError)  {}
func (nopObserver) InstanceResumed(string, string, time.Duration)    {}
func (nopObserver) InstancePaused(string, string)                    {}
func (nopObserver) InstanceCrashed(string, string, Crash)            {}
func (nopObserver) InstanceRemoved(string, string)                   {}
func (nopObserver) Scaled(string, int, int)                          {}
func (nopObserver) Queued(string, time.Duration, Wake, QueueOutcome) {}
