package scaler

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

var errExited = errors.New("container exited")

// prober decides when a starting instance can take traffic. It polls fast
// (a refused local connection costs microseconds), so readiness is seen
// within a few milliseconds of the port accepting.
type prober struct {
	addr string
	path string // HTTP path that must answer 2xx/3xx; "" with http=true: any HTTP answer
	http bool   // a TCP accept is not proof (rootless port forwarders accept for the app)
}

const (
	probeInterval = 2 * time.Millisecond
	aliveInterval = 100 * time.Millisecond
)

var probeClient = &http.Client{
	Timeout:   time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// wait returns nil once the app answers, errExited if died closes or alive
// says the container stopped running, or ctx's error.
func (p prober) wait(ctx context.Context, died <-chan struct{}, alive func(context.Context) bool) error {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	lastAlive := time.Now()
	for {
		if p.try(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-died:
			return errExited
		case <-t.C:
		}
		if alive != nil && time.Since(lastAlive) >= aliveInterval {
			lastAlive = time.Now()
			if !alive(ctx) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return errExited
			}
		}
	}
}

func (p prober) try(ctx context.Context) bool {
	if !p.http {
		d := net.Dialer{Timeout: 200 * time.Millisecond}
		c, err := d.DialContext(ctx, "tcp", p.addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	path := p.path
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+path, nil)
	if err != nil {
		return false
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	if p.path == "" {
		return true
	}
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}
