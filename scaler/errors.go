package scaler

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrQueueFull: the service has no free instance and its queue is full.
	ErrQueueFull = errors.New("podcell: queue full")
	// ErrQueueTimeout: a request waited queue_timeout without getting an instance.
	ErrQueueTimeout = errors.New("podcell: timed out waiting for an instance")
	// ErrClosed: the service was removed or the scaler closed.
	ErrClosed = errors.New("podcell: service closed")
	// ErrRefused, wrapped in the error a Try function returns, says that
	// the instance refused the connection before anything reached the app
	// (see Service.Try).
	ErrRefused = errors.New("podcell: the instance refused the connection")
)

// StartError says why an instance failed to start: it exited, timed out, or
// the engine refused it. It carries the container's last log lines.
type StartError struct {
	Service  string
	Reason   string // short and safe to show to a client
	ExitCode int    // -1 if the container did not exit
	Logs     []string
	Err      error
}

func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "service %s: instance failed to start: %s", e.Service, e.Reason)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if len(e.Logs) > 0 {
		fmt.Fprintf(&b, "; last log lines:\n  %s", strings.Join(e.Logs, "\n  "))
	}
	return b.String()
}

func (e *StartError) Unwrap() error { return e.Err }
