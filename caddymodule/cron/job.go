package cron

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/podcell/podcell/caddymodule/internal/duration"
	"github.com/podcell/podcell/scaler"
)

// Job is one scheduled HTTP call to a service: the one type of a cron job,
// as a service's spec declares it (the handler's JSON, the Caddyfile's),
// as the admin API takes and shows it, as the store keeps it and as the
// scheduler runs it. Zero values take the defaults documented on each
// field (see WithDefaults); a declared job names no service (see For).
type Job struct {
	// Service is the service the job calls. Not in the JSON: a job is
	// declared, stored and shown under its service.
	Service string `json:"-"`
	// Name identifies the job within its service: 1-40 lowercase letters,
	// digits and '-'. Default: derived from the path and a hash of the
	// schedule and path (see DefaultName), so renaming either makes a new job.
	Name string `json:"name,omitempty"`
	// Schedule is a standard 5-field cron expression (minute hour
	// day-of-month month day-of-week) or @hourly, @daily, @weekly,
	// @monthly, @yearly, @every <duration>.
	Schedule string      `json:"schedule"`
	Method   string      `json:"method,omitempty"` // GET HEAD POST PUT PATCH DELETE OPTIONS (default GET)
	Path     string      `json:"path"`             // starts with '/', may carry a query
	Body     string      `json:"body,omitempty"`   // not with GET or HEAD
	Header   http.Header `json:"header,omitempty"`
	// TimeZone is the IANA zone the schedule is read in (default UTC, so a
	// schedule means the same on every host).
	TimeZone string `json:"tz,omitempty"`
	// Timeout bounds one attempt (default 1m); in JSON a number of
	// nanoseconds or a string such as "30s".
	Timeout duration.Duration `json:"timeout,omitempty"`
	// Retries is how many times a failed attempt (5xx, 429, connection
	// error) is retried (default 0: non-idempotent calls are retried only
	// when asked).
	Retries int `json:"retries,omitempty"`
	// Overlap is skip (default), allow or replace.
	Overlap Overlap `json:"overlap,omitempty"`
}

// For is j, as declared, as the job of service, defaults filled in.
func (j Job) For(service string) Job {
	j.Service = service
	return j.WithDefaults()
}

// Overlap says what a tick does while the job's previous run is still running.
type Overlap int

const (
	OverlapSkip    Overlap = iota // the tick is recorded as skipped (default)
	OverlapAllow                  // the runs run concurrently
	OverlapReplace                // the running run is cancelled, the new one starts
)

func (o Overlap) String() string {
	switch o {
	case OverlapSkip:
		return "skip"
	case OverlapAllow:
		return "allow"
	case OverlapReplace:
		return "replace"
	}
	return fmt.Sprintf("Overlap(%d)", int(o))
}

// ParseOverlap reads "skip", "allow" or "replace".
func ParseOverlap(s string) (Overlap, error) {
	switch s {
	case "skip":
		return OverlapSkip, nil
	case "allow":
		return OverlapAllow, nil
	case "replace":
		return OverlapReplace, nil
	}
	return 0, fmt.Errorf("overlap %q: use skip, allow or replace", s)
}

// MarshalText and UnmarshalText make the JSON config read "skip", not 0.
func (o Overlap) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

func (o *Overlap) UnmarshalText(b []byte) error {
	v, err := ParseOverlap(string(b))
	if err != nil {
		return err
	}
	*o = v
	return nil
}

// Limits that keep a typo from producing an absurd job.
const (
	DefaultTimeout = time.Minute
	MaxRetries     = 10
)

var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// WithDefaults returns j with every unset field at its default.
func (j Job) WithDefaults() Job {
	if j.Method == "" {
		j.Method = http.MethodGet
	}
	if j.Name == "" {
		j.Name = DefaultName(j.Schedule, j.Path)
	}
	if j.TimeZone == "" {
		j.TimeZone = "UTC"
	}
	if j.Timeout == 0 {
		j.Timeout = duration.Duration(DefaultTimeout)
	}
	if len(j.Header) == 0 {
		j.Header = nil // so an empty header compares equal to none on reload
	}
	return j
}

// DefaultName is a job's name when none is given: a readable part from
// the path and a hash of the schedule and path, so it is stable across
// restarts and differs between jobs of one service.
func DefaultName(schedule, path string) string {
	sum := sha256.Sum256([]byte(schedule + "\n" + path))
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(path) {
		if b.Len() >= 31 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if b.Len() > 0 && !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	slug := strings.Trim(b.String(), "-")
	if slug == "" {
		slug = "cron"
	}
	return slug + "-" + hex.EncodeToString(sum[:4])
}

// Validate checks a job that went through WithDefaults. Errors name the
// job, its service and the field, and say how to fix it.
func (j Job) Validate() error {
	_, err := j.parse()
	return err
}

// parse validates j and reads its schedule.
func (j Job) parse() (schedule, error) {
	if err := scaler.CheckName(j.Service); err != nil {
		return schedule{}, fmt.Errorf("cron job %q: service name %w", j.Name, err)
	}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("cron job %q of service %s: "+format, append([]any{j.Name, j.Service}, args...)...)
	}
	// A job's name follows the service name's rule.
	if err := scaler.CheckName(j.Name); err != nil {
		return schedule{}, errf("name %w", err)
	}
	loc, err := time.LoadLocation(j.TimeZone)
	if err != nil {
		return schedule{}, errf("tz %q is not a known time zone: use an IANA name such as UTC, Europe/Berlin or America/New_York", j.TimeZone)
	}
	sched, err := parseSchedule(j.Schedule, loc)
	if err != nil {
		return schedule{}, errf("schedule %q: %v", j.Schedule, err)
	}
	if !validMethod(j.Method) {
		return schedule{}, errf("method %q is not supported: use one of %s", j.Method, strings.Join(methods, " "))
	}
	if err := checkPath(j.Path); err != nil {
		return schedule{}, errf("path %q %v", j.Path, err)
	}
	if j.Body != "" && (j.Method == http.MethodGet || j.Method == http.MethodHead) {
		return schedule{}, errf("a body needs a method that takes one (POST, PUT, PATCH, DELETE or OPTIONS), not %s", j.Method)
	}
	for k := range j.Header {
		if !validToken(k) {
			return schedule{}, errf("header name %q is invalid", k)
		}
		ck := http.CanonicalHeaderKey(k)
		if ck == "Host" || strings.HasPrefix(ck, "Podcell-Cron") {
			return schedule{}, errf("header %s is set by podcell and cannot be overridden", ck)
		}
	}
	if j.Timeout <= 0 {
		return schedule{}, errf("timeout %s must be positive", j.Timeout)
	}
	if j.Retries < 0 || j.Retries > MaxRetries {
		return schedule{}, errf("retries %d is out of range: use 0 to %d", j.Retries, MaxRetries)
	}
	if j.Overlap < OverlapSkip || j.Overlap > OverlapReplace {
		return schedule{}, errf("overlap %s: use skip, allow or replace", j.Overlap)
	}
	return sched, nil
}

func validMethod(m string) bool {
	for _, v := range methods {
		if m == v {
			return true
		}
	}
	return false
}

func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return fmt.Errorf("must start with a single '/', e.g. /tasks/cleanup")
	}
	u, err := url.ParseRequestURI(p)
	if err != nil {
		return fmt.Errorf("is not a valid request path: %v", err)
	}
	if u.Host != "" || u.Scheme != "" {
		return fmt.Errorf("must be a path, not a URL: the request goes to the service itself")
	}
	if strings.ContainsAny(p, " \t\r\n#") {
		return fmt.Errorf("must not contain spaces or '#'")
	}
	return nil
}

// validToken reports whether s is an HTTP header name (RFC 9110 token).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}
