// Package harness runs the Caddy binary the benchmarks measure: built from
// ./cmd/caddy, started with a Caddyfile in a directory of its own, its
// config replaced through the admin API, stopped as an operator stops it.
package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/podcell/podcell/scaler/scalertest"
)

// Logf prints a progress line on stderr (stdout carries the report).
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Caddy is a running Caddy process.
type Caddy struct {
	cmd    *exec.Cmd
	dir    string
	log    string // Caddy's stdout and stderr
	admin  string
	exited chan struct{}
}

// FreePorts returns n distinct free loopback ports: it holds all n
// listeners open until it has them, so no port is handed out twice.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func BuildCaddy(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "bin", "caddy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = scalertest.RepoRoot()
	cmd.Env = append(os.Environ(), "GOFLAGS=-tags=containers_image_openpgp", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	return bin, nil
}

func StartCaddy(bin, dir, admin, caddyfile string) (*Caddy, error) {
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o644); err != nil {
		return nil, err
	}
	c := &Caddy{dir: dir, log: filepath.Join(dir, "caddy.log"), admin: admin, exited: make(chan struct{})}
	lf, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	home := filepath.Join(dir, "home") // Caddy's data and config directories
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	c.cmd = exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	c.cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	c.cmd.Stdout, c.cmd.Stderr = lf, lf
	if err := c.cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	go func() { c.cmd.Wait(); lf.Close(); close(c.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/config/")
		if err == nil {
			resp.Body.Close()
			return c, nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("caddy exited at start:\n%s", c.Tail(30))
		default:
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("caddy's admin API did not come up:\n%s", c.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pid is the Caddy process's id.
func (c *Caddy) Pid() int { return c.cmd.Process.Pid }

func (c *Caddy) Logs() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}

func (c *Caddy) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(c.Logs(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *Caddy) Alive() error {
	select {
	case <-c.exited:
		return fmt.Errorf("caddy exited:\n%s", c.Tail(30))
	default:
		return nil
	}
}

// load replaces Caddy's config with a Caddyfile through the admin API.
func (c *Caddy) Load(caddyfile string) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+c.admin+"/load", strings.NewReader(caddyfile))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /load: %d %s", resp.StatusCode, body)
	}
	return nil
}

// stop stops Caddy as an operator does (SIGINT): podcell stops and removes
// its instances.
func (c *Caddy) Stop() {
	select {
	case <-c.exited:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
	case <-time.After(5 * time.Minute):
		// Generous: podcell stops and removes every instance first, and a
		// benchmark may run a thousand services.
		Logf("caddy did not stop within 5 minutes; killing it")
		c.cmd.Process.Kill()
		<-c.exited
	}
}
