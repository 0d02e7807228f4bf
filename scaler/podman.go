package scaler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/containers/podman/v5/libpod/define"
	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/network"
	"github.com/containers/podman/v5/pkg/bindings/system"
	"github.com/containers/podman/v5/pkg/domain/entities/types"
	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"
	nettypes "go.podman.io/common/libnetwork/types"
	storagetypes "go.podman.io/storage/types"
)

// DefaultPodmanURI is where a rootful Podman API service listens by default.
const DefaultPodmanURI = "unix:///run/podman/podman.sock"

// Podman is the Runtime backed by Podman's REST API.
type Podman struct {
	uri  string
	conn context.Context // carries the bindings' connection
}

// NewPodman connects to the Podman API at uri (e.g. unix:///run/podman/podman.sock).
// An empty uri uses $CONTAINER_HOST, then the rootful default socket.
func NewPodman(ctx context.Context, uri string) (*Podman, error) {
	if uri == "" {
		uri = os.Getenv("CONTAINER_HOST")
	}
	if uri == "" {
		uri = DefaultPodmanURI
	}
	// NewConnection pings the service; bound it so a dead socket fails fast.
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := bindings.NewConnection(pingCtx, uri)
	if err != nil {
		return nil, fmt.Errorf("podman API at %s does not answer: %w (start it with 'podman system service --time=0 %s', or run scripts/setup-host.sh)", uri, err, uri)
	}
	// The connection must outlive the ping's deadline.
	return &Podman{uri: uri, conn: withoutCancel{conn}}, nil
}

// URI is the API address this runtime talks to.
func (p *Podman) URI() string { return p.uri }

// withoutCancel keeps the values (the bindings connection) of a context but
// not its deadline or cancellation.
type withoutCancel struct{ context.Context }

func (withoutCancel) Deadline() (time.Time, bool) { return time.Time{}, false }
func (withoutCancel) Done() <-chan struct{}       { return nil }
func (withoutCancel) Err() error                  { return nil }

// callCtx gives a call its own deadline and cancellation while the bindings
// find their connection in p.conn.
type callCtx struct {
	context.Context
	values context.Context
}

func (c callCtx) Value(key any) any {
	if v := c.values.Value(key); v != nil {
		return v
	}
	return c.Context.Value(key)
}

func (p *Podman) ctx(ctx context.Context) context.Context {
	return callCtx{Context: ctx, values: p.conn}
}

// BindingsContext returns ctx carrying this runtime's connection, for calls
// of the Podman bindings the Runtime interface does not cover (image builds).
func (p *Podman) BindingsContext(ctx context.Context) context.Context { return p.ctx(ctx) }

func (p *Podman) Host(ctx context.Context) (HostInfo, error) {
	info, err := system.Info(p.ctx(ctx), nil)
	if err != nil {
		return HostInfo{}, fmt.Errorf("podman info: %w", err)
	}
	h := HostInfo{
		Version:       info.Version.Version,
		Rootless:      info.Host.Security.Rootless,
		CgroupVersion: info.Host.CgroupsVersion,
		CPUs:          info.Host.CPUs,
	}
	if info.Host.OCIRuntime != nil {
		h.OCIRuntime = info.Host.OCIRuntime.Name
	}
	if h.CPUs == 0 {
		h.CPUs = runtime.NumCPU()
	}
	return h, nil
}

// UserNSSize is the number of uids (and gids) of each container's user
// namespace under userns=auto: container ids 0 to 65534, which covers
// "nobody" (65534), the highest id Debian and Alpine images use. Measured
// with Podman 4.3.1 here: 65536 and more make the overlay mount of the
// id-mapped layer copy fail with "permission denied".
const UserNSSize = 65535

func (p *Podman) Create(ctx context.Context, cs ContainerSpec) (string, error) {
	s := specgen.NewSpecGenerator(cs.Image, false)
	s.Name = cs.Name
	s.Labels = cs.Labels
	s.Env = cs.Env
	if len(cs.Command) > 0 {
		s.Entrypoint = cs.Command[:1]
		s.Command = cs.Command[1:]
		if len(s.Command) == 0 {
			s.Command = []string{}
		}
	}
	yes, no := true, false
	s.ReadOnlyFilesystem = &yes
	s.ReadWriteTmpfs = &no // else Podman mounts writable /run and /var/tmp
	s.Mounts = []spec.Mount{{
		Destination: "/tmp",
		Type:        "tmpfs",
		Source:      "tmpfs",
		Options:     []string{"rw", "nosuid", "nodev", "mode=1777", fmt.Sprintf("size=%dm", cs.Limits.TmpMB)},
	}}
	s.CapDrop = []string{"ALL"}
	s.NoNewPrivileges = &yes
	s.Init = &yes
	if cs.StopTimeout > 0 {
		secs := uint((cs.StopTimeout + time.Second - 1) / time.Second)
		s.StopTimeout = &secs
	}
	if cs.UserNS == "auto" {
		// The 4.x API reads auto mode from the ID mappings, not only the
		// namespace mode. The explicit size matters: without one, Podman
		// sizes the namespace from the image's layers, and in Podman < 4.4
		// that path takes storage.lock inside layers.lock, the reverse of
		// every other path, so a create beside a start or an unmount
		// deadlocks the whole Podman service (containers/storage#1387).
		s.UserNS = specgen.Namespace{NSMode: specgen.Auto, Value: fmt.Sprintf("size=%d", UserNSSize)}
		s.IDMappings = &storagetypes.IDMappingOptions{AutoUserNs: true,
			AutoUserNsOpts: storagetypes.AutoUserNsOptions{Size: UserNSSize}}
	}
	mem := cs.Limits.MemoryBytes()
	quota := cs.Limits.CPUQuota
	if cs.Limits.StartCPUQuota > 0 {
		quota = cs.Limits.StartCPUQuota
	}
	period := uint64(cs.Limits.CPUPeriod)
	pids := cs.Limits.PidsLimit
	s.ResourceLimits = &spec.LinuxResources{
		Memory: &spec.LinuxMemory{Limit: &mem, Swap: &mem}, // swap == memory: no swap on top
		CPU:    &spec.LinuxCPU{Quota: &quota, Period: &period},
		Pids:   &spec.LinuxPids{Limit: pids},
	}
	if cs.Cpuset != "" {
		s.ResourceLimits.CPU.Cpus = cs.Cpuset
	}
	if cs.Network != "" {
		s.NetNS = specgen.Namespace{NSMode: specgen.Bridge}
		s.Networks = map[string]nettypes.PerNetworkOptions{cs.Network: {}}
	}
	if cs.Publish {
		s.PortMappings = []nettypes.PortMapping{{HostIP: "127.0.0.1", ContainerPort: uint16(cs.Port), Protocol: "tcp"}}
	}
	resp, err := containers.CreateWithSpec(p.ctx(ctx), s, nil)
	if err != nil {
		return "", fmt.Errorf("create container for image %s: %w", cs.Image, err)
	}
	return resp.ID, nil
}

func (p *Podman) Init(ctx context.Context, id string) error {
	return containers.ContainerInit(p.ctx(ctx), id, nil)
}

func (p *Podman) Start(ctx context.Context, id string) error {
	return containers.Start(p.ctx(ctx), id, nil)
}

func (p *Podman) Stop(ctx context.Context, id string, grace time.Duration) error {
	secs := uint((grace + time.Second - 1) / time.Second)
	err := containers.Stop(p.ctx(ctx), id, new(containers.StopOptions).WithTimeout(secs).WithIgnore(true))
	if isNotFound(err) {
		return nil
	}
	return err
}

func (p *Podman) Pause(ctx context.Context, id string) error {
	return containers.Pause(p.ctx(ctx), id, nil)
}

func (p *Podman) Unpause(ctx context.Context, id string) error {
	return containers.Unpause(p.ctx(ctx), id, nil)
}

func (p *Podman) Remove(ctx context.Context, id string) error {
	opts := new(containers.RemoveOptions).WithForce(true).WithIgnore(true).WithTimeout(0)
	var err error
	// Removing right after a stop can fail once with "device or resource
	// busy" on the shm mount; a retry succeeds.
	for try := 0; try < 3; try++ {
		_, err = containers.Remove(p.ctx(ctx), id, opts)
		if err == nil || isNotFound(err) {
			return nil
		}
		if !strings.Contains(err.Error(), "busy") {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

func (p *Podman) Inspect(ctx context.Context, id string) (ContainerInfo, error) {
	data, err := containers.Inspect(p.ctx(ctx), id, nil)
	if err != nil {
		return ContainerInfo{}, err
	}
	ci := ContainerInfo{ID: data.ID, Name: data.Name}
	if data.State != nil {
		ci.State = data.State.Status
		ci.ExitCode = int(data.State.ExitCode)
		ci.OOMKilled = data.State.OOMKilled
		ci.Error = data.State.Error
		ci.Pid = data.State.Pid
	}
	if data.NetworkSettings != nil {
		for name := range data.NetworkSettings.Networks {
			ci.Network = name // podcell puts a container on one network at most
		}
	}
	if data.Config != nil {
		ci.Labels = data.Config.Labels
	}
	if ci.State == StateRunning || ci.State == StatePaused || ci.State == StateInitialized {
		ci.Addr = addrOf(data.NetworkSettings, ci.Labels)
	}
	return ci, nil
}

// addrOf finds how the host reaches the app: a port published on the host if
// there is one, else the container's address on its network.
func addrOf(ns *define.InspectNetworkSettings, labels map[string]string) string {
	if ns == nil {
		return ""
	}
	port := labels[LabelPort]
	for key, binds := range ns.Ports {
		if strings.TrimSuffix(key, "/tcp") != port {
			continue
		}
		for _, b := range binds {
			if b.HostPort != "" {
				ip := b.HostIP
				if ip == "" || ip == "0.0.0.0" {
					ip = "127.0.0.1"
				}
				return net.JoinHostPort(ip, b.HostPort)
			}
		}
	}
	ip := ns.IPAddress
	if ip == "" {
		for _, n := range ns.Networks {
			if n != nil && n.IPAddress != "" {
				ip = n.IPAddress
				break
			}
		}
	}
	if ip == "" || port == "" {
		return ""
	}
	return net.JoinHostPort(ip, port)
}

func (p *Podman) List(ctx context.Context, label, value string) ([]ContainerInfo, error) {
	opts := new(containers.ListOptions).WithAll(true).WithFilters(map[string][]string{"label": {label + "=" + value}})
	list, err := containers.List(p.ctx(ctx), opts)
	if err != nil {
		return nil, err
	}
	out := make([]ContainerInfo, 0, len(list))
	for _, c := range list {
		ci := ContainerInfo{ID: c.ID, State: c.State, Labels: c.Labels, ExitCode: int(c.ExitCode)}
		if len(c.Names) > 0 {
			ci.Name = c.Names[0]
		}
		if len(c.Networks) == 1 {
			ci.Network = c.Networks[0]
		}
		out = append(out, ci)
	}
	return out, nil
}

func (p *Podman) Events(ctx context.Context, label, value string) (<-chan Event, error) {
	raw := make(chan types.Event, 64)
	cancel := make(chan bool, 1)
	stream := true
	opts := &system.EventsOptions{
		Stream:  &stream,
		Filters: map[string][]string{"type": {"container"}, "label": {label + "=" + value}},
	}
	if err := system.Events(p.ctx(ctx), raw, cancel, opts); err != nil {
		return nil, fmt.Errorf("podman events: %w", err)
	}
	out := make(chan Event, 64)
	go func() {
		defer close(out)
		defer func() { cancel <- true }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-raw:
				if !ok {
					return
				}
				ev := Event{ID: e.Actor.ID, Action: string(e.Action), Labels: e.Actor.Attributes, Time: time.Unix(0, e.TimeNano)}
				if code, err := strconv.Atoi(e.Actor.Attributes["containerExitCode"]); err == nil {
					ev.ExitCode = code
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func (p *Podman) Logs(ctx context.Context, id string, tail int) ([]string, error) {
	stdout := make(chan string, 64)
	stderr := make(chan string, 64)
	done := make(chan error, 1)
	opts := new(containers.LogOptions).WithStdout(true).WithStderr(true).WithTail(strconv.Itoa(tail))
	go func() {
		done <- containers.Logs(p.ctx(ctx), id, opts, stdout, stderr)
	}()
	var lines []string
	for {
		select {
		case l := <-stdout:
			lines = append(lines, strings.TrimRight(l, "\n"))
		case l := <-stderr:
			lines = append(lines, strings.TrimRight(l, "\n"))
		case err := <-done:
			// Drain what arrived before the call returned.
			for {
				select {
				case l := <-stdout:
					lines = append(lines, strings.TrimRight(l, "\n"))
					continue
				case l := <-stderr:
					lines = append(lines, strings.TrimRight(l, "\n"))
					continue
				default:
				}
				break
			}
			if len(lines) > tail {
				lines = lines[len(lines)-tail:]
			}
			return lines, err
		}
	}
}

func (p *Podman) FollowLogs(ctx context.Context, id string, since time.Time, fn func(LogLine)) error {
	opts := new(containers.LogOptions).WithStdout(true).WithStderr(true).WithFollow(true).WithTimestamps(true)
	if !since.IsZero() {
		opts.WithSince(since.UTC().Format(time.RFC3339Nano))
	}
	stdout := make(chan string, 64)
	stderr := make(chan string, 64)
	done := make(chan error, 1)
	go func() {
		done <- containers.Logs(p.ctx(ctx), id, opts, stdout, stderr)
	}()
	out := lineJoiner{stream: "stdout", fn: fn}
	errs := lineJoiner{stream: "stderr", fn: fn}
	for {
		select {
		case f := <-stdout:
			out.add(f)
		case f := <-stderr:
			errs.add(f)
		case err := <-done:
			// Logs sent everything before it returned: it is buffered.
			for len(stdout) > 0 || len(stderr) > 0 {
				select {
				case f := <-stdout:
					out.add(f)
				case f := <-stderr:
					errs.add(f)
				}
			}
			out.flush()
			errs.flush()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

// maxLogLine bounds a line pieced together from partial frames, so an app
// that never writes a line break cannot grow it without end.
const maxLogLine = 64 << 10

// lineJoiner turns one stream's log frames into lines. With timestamps on,
// Podman sends each line as "<RFC 3339 time> <text>\n"; a long line comes
// as several frames, all but the last without the line break.
type lineJoiner struct {
	stream string
	fn     func(LogLine)
	first  time.Time // of the partial line in buf
	buf    strings.Builder
}

func (j *lineJoiner) add(frame string) {
	t, text, whole := parseLogFrame(frame)
	if j.buf.Len() == 0 {
		j.first = t
	}
	j.buf.WriteString(text)
	if whole || j.buf.Len() >= maxLogLine {
		j.flush()
	}
}

func (j *lineJoiner) flush() {
	if j.buf.Len() == 0 {
		return
	}
	j.fn(LogLine{Time: j.first, Stream: j.stream, Text: j.buf.String()})
	j.buf.Reset()
}

// parseLogFrame splits a timestamped frame. A frame whose time does not
// parse is kept whole and dated now.
func parseLogFrame(frame string) (t time.Time, text string, whole bool) {
	text, whole = strings.CutSuffix(frame, "\n")
	ts, rest, ok := strings.Cut(text, " ")
	if ok {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return t, rest, whole
		}
	}
	return time.Now(), text, whole
}

func (p *Podman) CreateNetwork(ctx context.Context, n NetworkSpec) (NetworkInfo, error) {
	req := &nettypes.Network{
		Name:    n.Name,
		Driver:  "bridge",
		Labels:  n.Labels,
		Options: map[string]string{"isolate": "true"},
	}
	if n.Subnet != nil {
		req.Subnets = []nettypes.Subnet{{Subnet: nettypes.IPNet{IPNet: *n.Subnet}}}
	}
	made, err := network.Create(p.ctx(ctx), req)
	if err != nil {
		return NetworkInfo{}, fmt.Errorf("create network %s: %w", n.Name, err)
	}
	return networkInfo(made), nil
}

func (p *Podman) RemoveNetwork(ctx context.Context, name string) error {
	_, err := network.Remove(p.ctx(ctx), name, nil)
	if err != nil && (isNotFound(err) || strings.Contains(err.Error(), "network not found")) {
		return nil
	}
	return err
}

func (p *Podman) ListNetworks(ctx context.Context) ([]NetworkInfo, error) {
	list, err := network.List(p.ctx(ctx), nil)
	if err != nil {
		return nil, err
	}
	out := make([]NetworkInfo, 0, len(list))
	for _, n := range list {
		out = append(out, networkInfo(n))
	}
	return out, nil
}

func networkInfo(n nettypes.Network) NetworkInfo {
	ni := NetworkInfo{Name: n.Name, Labels: n.Labels, Interface: n.NetworkInterface}
	for _, sn := range n.Subnets {
		ipn := sn.Subnet.IPNet
		ni.Subnets = append(ni.Subnets, &ipn)
	}
	return ni
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var e interface{ Code() int }
	if errors.As(err, &e) && e.Code() == 404 {
		return true
	}
	return strings.Contains(err.Error(), "no such container")
}
