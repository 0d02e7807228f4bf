package caddymodule

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/podcell/podcell/builder"
	"github.com/podcell/podcell/scaler"
)

// gitSource is a service's code: a public git repository built into an
// image, instead of a ready image.
type gitSource struct {
	// URL of the repository (https; http for local testing).
	URL string `json:"url"`
	// Ref is a branch, a tag or a commit SHA. Default: the remote's HEAD.
	Ref string `json:"ref,omitempty"`
	// Root is the app's directory inside the repository (monorepos).
	Root string `json:"root,omitempty"`
	// Runtime is the base image family: python3.11-debian, node20-alpine...
	Runtime string `json:"runtime"`
	// Build is the build command (several lines allowed); detected if empty.
	Build string `json:"build,omitempty"`
	// Start is the start command; detected if empty.
	Start string `json:"start,omitempty"`
	// PollInterval redeploys when the ref points to a new commit, checked
	// this often. Zero: no polling.
	PollInterval caddy.Duration `json:"poll_interval,omitempty"`
	// WebhookPath, on this route, accepts GitHub push webhooks signed with
	// WebhookSecret (X-Hub-Signature-256) and redeploys.
	// WebhookSecret may be a placeholder ({env.NAME}, {file./path}) in a
	// config, so the config does not hold it (placeholders.go).
	WebhookPath   string `json:"webhook_path,omitempty"`
	WebhookSecret string `json:"webhook_secret,omitempty"`
	// BuildMemoryMB, BuildCPUs, BuildPids and BuildTimeout bound this
	// service's builds, overriding the app's (zero: the app's).
	BuildMemoryMB int            `json:"build_memory_mb,omitempty"`
	BuildCPUs     float64        `json:"build_cpus,omitempty"`
	BuildPids     int            `json:"build_pids,omitempty"`
	BuildTimeout  caddy.Duration `json:"build_timeout,omitempty"`

	// secret is the key webhooks are verified with: WebhookSecret resolved
	// for a service the config declares, as it is for the admin API's.
	secret string
}

func sameSource(a, b *gitSource) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func (g *gitSource) spec(port int) builder.Spec {
	return builder.Spec{
		Source:  builder.Source{URL: g.URL, Ref: g.Ref, RootDir: g.Root},
		Runtime: g.Runtime,
		Build:   g.Build,
		Start:   g.Start,
		Port:    port,
		Limits: builder.Limits{MemoryMB: g.BuildMemoryMB, CPUs: g.BuildCPUs, Pids: g.BuildPids,
			Timeout: time.Duration(g.BuildTimeout)},
	}
}

func (g *gitSource) validate() error {
	if err := g.spec(8080).Validate(); err != nil {
		return err
	}
	if (g.WebhookPath == "") != (g.WebhookSecret == "") {
		return fmt.Errorf("webhook needs both a path and a secret: webhook /_podcell/deploy <secret>")
	}
	if g.WebhookPath != "" && !strings.HasPrefix(g.WebhookPath, "/") {
		return fmt.Errorf("webhook path %q must start with '/'", g.WebhookPath)
	}
	return nil
}

// startDeployer hands the service's source and effective settings to its
// deployer, which builds and deploys as needed.
func (a *App) startDeployer(ref *serviceRef, cfg scaler.ServiceConfig, reason string) error {
	d := ref.dep
	d.mu.Lock()
	d.b = a.builder
	d.recordRevision = a.recordRevision
	d.keepImages = a.keepImages()
	d.mu.Unlock()
	return d.update(ref.src.spec(ref.cfg.Port), cfg, ref, time.Duration(ref.src.PollInterval), reason)
}

// loadDeployer takes this config's reference on the service's pooled
// deployer, making it if it is new.
func (a *App) loadDeployer(ref *serviceRef) (*deployer, error) {
	val, _, err := deployers.LoadOrNew(ref.key, func() (caddy.Destructor, error) {
		ctx, cancel := context.WithCancel(context.Background())
		d := &deployer{name: ref.cfg.Name, sc: a.sc, st: a.st, hub: a.hub, b: a.builder, log: caddy.Log().Named("podcell.build"),
			ctx: ctx, cancel: cancel, pollSet: make(chan struct{}, 1), images: make(chan struct{}, 1), keepImages: a.keepImages()}
		d.loadBuilds()
		go d.pollLoop()
		return pooledDeployer{d}, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(pooledDeployer).d, nil
}

// webhookDeployer is what a verified webhook may do to a service: start a
// deploy, once per delivery. The service's deployer is one; tests use a fake.
type webhookDeployer interface {
	// webhookDeploy starts a deploy unless the delivery id or the body
	// digest was seen before; seen reports a repeat (and nothing started).
	webhookDeploy(delivery, digest string) (build int, seen bool)
}

// pushEvent is what podcell reads of a GitHub push payload.
type pushEvent struct {
	Ref        string `json:"ref"`
	Deleted    bool   `json:"deleted"`
	Repository struct {
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
}

// serveWebhook handles a GitHub webhook. The signature is checked first;
// then only a push to the deployed ref starts a deploy, and only once per
// delivery. Every other signed event is acknowledged with 200 and a body
// that says why nothing was deployed, so GitHub's delivery log shows it
// and does not count it as a failure.
func serveWebhook(w http.ResponseWriter, r *http.Request, src *gitSource, dep webhookDeployer) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return nil
	}
	if src.secret == "" {
		// Never verify against an empty key: anyone could sign with it.
		http.Error(w, "webhook secret not loaded", http.StatusServiceUnavailable)
		return nil
	}
	sig := strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
	mac := hmac.New(sha256.New, []byte(src.secret))
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return nil
	}
	ignored := func(format string, args ...any) error {
		fmt.Fprintf(w, "ignored: "+format+"\n", args...)
		return nil
	}
	switch ev := r.Header.Get("X-GitHub-Event"); ev {
	case "ping":
		fmt.Fprintln(w, "pong")
		return nil
	case "push":
	case "":
		return ignored("no X-GitHub-Event header; only push events deploy")
	default:
		return ignored("%q event; only push events deploy", ev)
	}
	var push pushEvent
	if err := json.Unmarshal(body, &push); err != nil {
		http.Error(w, "push payload is not JSON: "+err.Error()+" (set the webhook's content type to application/json)", http.StatusBadRequest)
		return nil
	}
	if reason := src.pushIgnored(push); reason != "" {
		return ignored("%s", reason)
	}
	// The delivery id is not signed: a replay can change it. The body is,
	// so its digest (the signature) catches a replayed payload whatever
	// its delivery header says.
	build, seen := dep.webhookDeploy(r.Header.Get("X-GitHub-Delivery"), want)
	if seen {
		return ignored("this delivery was deployed before (a redelivery or a replay)")
	}
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "build %d\n", build)
	return nil
}

// pushIgnored says why a push does not deploy the service; "" if it does.
// A push deploys when its ref is the branch or tag the service builds or,
// with no ref configured, the repository's default branch.
func (g *gitSource) pushIgnored(push pushEvent) string {
	switch {
	case push.Ref == "":
		return "push event without a ref"
	case push.Deleted:
		return fmt.Sprintf("push deletes %s", push.Ref)
	case fullSHA.MatchString(g.Ref):
		return fmt.Sprintf("the service builds commit %s, which no push moves", g.Ref)
	case g.Ref != "":
		if push.Ref == "refs/heads/"+g.Ref || push.Ref == "refs/tags/"+g.Ref {
			return ""
		}
		return fmt.Sprintf("push to %s; the service builds %s", push.Ref, g.Ref)
	case push.Repository.DefaultBranch == "":
		return fmt.Sprintf("push to %s names no repository.default_branch, which the service builds (set a ref in its git line)", push.Ref)
	case push.Ref != "refs/heads/"+push.Repository.DefaultBranch:
		return fmt.Sprintf("push to %s; the service builds the default branch %s", push.Ref, push.Repository.DefaultBranch)
	}
	return ""
}

// fullSHA matches a commit SHA, which the builder takes as a ref.
var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)
