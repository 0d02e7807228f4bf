package scaler

import (
	"context"
	"time"
)

// Runtime is what the scaler needs from a container engine. Podman (over its
// REST API) is the real one; tests of scaling policy use a fake.
type Runtime interface {
	// Host reports facts about the engine that decide how instances are run.
	Host(ctx context.Context) (HostInfo, error)
	Create(ctx context.Context, spec ContainerSpec) (id string, err error)
	// Init takes a created container as far as it goes without running
	// the app: namespaces, network and the OCI runtime's process, which
	// waits to exec the app until Start. Its state is then initialized.
	Init(ctx context.Context, id string) error
	Start(ctx context.Context, id string) error
	// Stop sends SIGTERM and kills after grace.
	Stop(ctx context.Context, id string, grace time.Duration) error
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	// Remove force-removes a container; removing one that is gone is not an error.
	Remove(ctx context.Context, id string) error
	Inspect(ctx context.Context, id string) (ContainerInfo, error)
	// List returns all containers (running or not) that carry label=value.
	List(ctx context.Context, label, value string) ([]ContainerInfo, error)
	// Events streams container events for containers carrying label=value
	// until ctx ends or the stream breaks; the channel is then closed.
	Events(ctx context.Context, label, value string) (<-chan Event, error)
	// Logs returns up to tail of the container's last output lines.
	Logs(ctx context.Context, id string, tail int) ([]string, error)
	// FollowLogs calls fn with each output line of the container written
	// at or after since (the zero time: all of them), as they come, on one
	// goroutine. It returns nil once the container has stopped and its
	// output is read, or ctx's error when ctx ends first.
	FollowLogs(ctx context.Context, id string, since time.Time, fn func(LogLine)) error
	// SetCPU sets a running container's CPU quota (µs per period); pid is
	// its process as Inspect reports it. The start boost is lowered with it.
	SetCPU(ctx context.Context, id string, pid int, quota, period int64) error
}

// LogLine is one line a container wrote.
type LogLine struct {
	Time   time.Time
	Stream string // "stdout" or "stderr"
	Text   string // without the line break
}

// HostInfo describes the container engine's host.
type HostInfo struct {
	Version       string
	Rootless      bool
	CgroupVersion string // "v1" or "v2"
	CPUs          int
	OCIRuntime    string
}

// LimitsEnforced reports whether memory and CPU limits take effect on this host.
// Rootless Podman on cgroup v1 accepts limits and silently ignores them.
func (h HostInfo) LimitsEnforced() bool {
	return !(h.Rootless && h.CgroupVersion == "v1")
}

// CanPause reports whether containers can be frozen. Rootless Podman on
// cgroup v1 has no cgroup per container, so pause fails there.
func (h HostInfo) CanPause() bool {
	return !(h.Rootless && h.CgroupVersion == "v1")
}

// ContainerSpec is everything the scaler decides about one instance's container.
type ContainerSpec struct {
	Name    string
	Image   string
	Command []string // replaces the image's entrypoint+cmd when set
	Env     map[string]string
	Labels  map[string]string
	Port    int
	// Publish maps Port to a random port on 127.0.0.1. Needed where the
	// container's own address cannot be reached from the host (rootless).
	Publish     bool
	Limits      Limits
	Cpuset      string // cores the instance may run on, e.g. "1" or "0-1"
	UserNS      string // "auto" for per-container user namespaces; "" for the engine default
	StopTimeout time.Duration
	// Network is the Podman network the container joins; "" leaves it on
	// the engine's default (slirp4netns, each container in a network
	// namespace of its own, under rootless Podman).
	Network string
}

// Container states as the engine reports them.
const (
	StateCreated     = "created"
	StateInitialized = "initialized" // created and Init'ed: see Runtime.Init
	StateRunning     = "running"
	StatePaused      = "paused"
	StateExited      = "exited"
	StateStopped     = "stopped" // Podman's brief state between the process exiting and "exited"
)

// hasExited: the container's process is gone.
func hasExited(state string) bool {
	return state == StateExited || state == StateStopped
}

// ContainerInfo is the part of an engine's inspect output the scaler uses.
type ContainerInfo struct {
	ID        string
	Name      string
	State     string
	Labels    map[string]string
	Addr      string // host:port that reaches the app, once running
	Pid       int    // the container's process on the host, while running
	ExitCode  int
	OOMKilled bool
	Error     string
	Network   string // the network the container is on ("" for the engine's default)
}

// Event is a container lifecycle event.
type Event struct {
	ID       string
	Action   string // "died", "oom", "remove", "start", ...
	Labels   map[string]string
	ExitCode int
	Time     time.Time
}

// Labels podcell puts on every container it owns.
const (
	LabelOwner    = "podcell.owner"    // which podcell (data directory) owns it
	LabelService  = "podcell.service"  // the service name
	LabelRevision = "podcell.revision" // the service config revision it runs
	LabelPort     = "podcell.port"     // the port the app listens on in the container
)
