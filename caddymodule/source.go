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
	WebhookPath   string `json:"webhook_path,omitempty"`
	WebhookSecret string `json:"webhook_secret,omitempty"`
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

// serveWebhook handles a GitHub push webhook: it checks the HMAC signature
// and, for a push to the deployed branch, starts a deploy.
func serveWebhook(w http.ResponseWriter, r *http.Request, ref *serviceRef) error {
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
	sig := strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
	mac := hmac.New(sha256.New, []byte(ref.src.WebhookSecret))
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return nil
	}
	if ev := r.Header.Get("X-GitHub-Event"); ev == "ping" {
		fmt.Fprintln(w, "pong")
		return nil
	}
	var push struct {
		Ref string `json:"ref"`
	}
	json.Unmarshal(body, &push)
	if ref.src.Ref != "" && push.Ref != "" && push.Ref != "refs/heads/"+ref.src.Ref && push.Ref != "refs/tags/"+ref.src.Ref {
		fmt.Fprintf(w, "ignored: push to %s, deployed ref is %s\n", push.Ref, ref.src.Ref)
		return nil
	}
	d := ref.dep
	if d == nil {
		http.Error(w, "service not deployed yet", http.StatusServiceUnavailable)
		return nil
	}
	id := d.deploy("webhook")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "build %d\n", id)
	return nil
}
