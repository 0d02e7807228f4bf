package cron

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// send makes r's request, with retries, and returns its completed record.
func (s *Scheduler) send(ctx context.Context, r *run) Run {
	j, rec := r.job, r.rec
	start := time.Now() // Duration is elapsed time, whatever the Clock says
	svc := s.opts.Service(j.Service)
	if svc == nil {
		rec.Status, rec.Error = StatusFailed, fmt.Sprintf("service %s is not declared", j.Service)
		rec.Duration = time.Since(start)
		return rec
	}
	tr := &attemptTransport{send: svc}
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{
		Transport: tr,
		Timeout:   time.Duration(j.Timeout),
		// A redirect is the service's answer, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.Logger = nil // retryablehttp logs to stderr by default; the run record says it all
	c.RetryMax = j.Retries
	c.RetryWaitMin, c.RetryWaitMax = s.opts.RetryWaitMin, s.opts.RetryWaitMax
	// Keep the last response after the retries, for its status and body.
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler

	var body any
	if j.Body != "" {
		body = []byte(j.Body)
	}
	// The service is svc's: the URL is the path and query, the Host the
	// service's name, as a client of its route would send it.
	req, err := retryablehttp.NewRequestWithContext(ctx, j.Method, j.Path, body)
	if err != nil {
		rec.Status, rec.Error = StatusFailed, err.Error()
		return rec
	}
	req.Host = j.Service
	for k, v := range j.Header {
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", UserAgent)
	}
	req.Header.Set(HeaderJob, j.Name)
	req.Header.Set(HeaderScheduled, rec.Scheduled.In(r.loc).Format(time.RFC3339))
	if s.opts.Secret != nil {
		if secret := s.opts.Secret(j.Service); secret != "" {
			req.Header.Set(HeaderSecret, secret)
		}
	}

	resp, err := c.Do(req)
	var snippet string
	if resp != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		resp.Body.Close()
		snippet = strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	}
	rec.Duration = time.Since(start)
	rec.Attempts, rec.StatusCode = tr.result()

	switch {
	case err == nil && resp != nil && resp.StatusCode >= 200 && resp.StatusCode < 300:
		rec.Status = StatusSucceeded
	case errors.Is(ctx.Err(), context.Canceled):
		rec.Status, rec.Error = StatusCancelled, "cancelled: the scheduler stopped"
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		rec.Status = StatusFailed
		rec.Error = fmt.Sprintf("gave up after %d attempt(s): the run's time limit ran out (timeout %s × (retries+1), and no later than the next fire time)", rec.Attempts, j.Timeout)
	case err != nil:
		rec.Status = StatusFailed
		rec.Error = fmt.Sprintf("after %d attempt(s): %v", rec.Attempts, err)
	default:
		rec.Status = StatusFailed
		rec.Error = fmt.Sprintf("HTTP %d after %d attempt(s)", resp.StatusCode, rec.Attempts)
		if snippet != "" {
			rec.Error += ": " + snippet
		}
	}
	return rec
}

// attemptTransport numbers the attempts of one run in their
// Podcell-Cron-Attempt header and remembers the last status code, which
// retryablehttp drops when a backoff wait is cut short.
type attemptTransport struct {
	send     Doer
	mu       sync.Mutex
	attempts int
	status   int
}

func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	t.attempts++
	n := t.attempts
	t.mu.Unlock()
	req = req.Clone(req.Context()) // a RoundTripper must not change its request
	req.Header.Set(HeaderAttempt, strconv.Itoa(n))
	resp, err := t.send.Do(req.Context(), req)
	t.mu.Lock()
	t.status = 0
	if resp != nil {
		t.status = resp.StatusCode
	}
	t.mu.Unlock()
	return resp, err
}

func (t *attemptTransport) result() (attempts, status int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.attempts, t.status
}
