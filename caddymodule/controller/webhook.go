package controller

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
)

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

// ServeWebhook answers a GitHub webhook for service name: the route of
// the webhook path of a git service (Gateway.WebhookPath), apart from the
// service's traffic.
func (c *Controller) ServeWebhook(w http.ResponseWriter, r *http.Request, name string) {
	c.mu.Lock()
	s := c.services[name]
	c.mu.Unlock()
	if s == nil || s.dep == nil || s.spec.Git.WebhookPath == "" {
		http.Error(w, "no webhook here", http.StatusNotFound)
		return
	}
	serveWebhook(w, r, s.spec.Git, s.webhookKey, s.dep)
}

// serveWebhook handles a GitHub webhook. The signature is checked first;
// then only a push to the deployed ref starts a deploy, and only once per
// delivery. Every other signed event is acknowledged with 200 and a body
// that says why nothing was deployed, so GitHub's delivery log shows it
// and does not count it as a failure.
func serveWebhook(w http.ResponseWriter, r *http.Request, src *GitSource, key string, dep webhookDeployer) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if key == "" {
		// Never verify against an empty key: anyone could sign with it.
		http.Error(w, "webhook secret not loaded", http.StatusServiceUnavailable)
		return
	}
	sig := strings.TrimPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	ignored := func(format string, args ...any) {
		fmt.Fprintf(w, "ignored: "+format+"\n", args...)
	}
	switch ev := r.Header.Get("X-GitHub-Event"); ev {
	case "ping":
		fmt.Fprintln(w, "pong")
		return
	case "push":
	case "":
		ignored("no X-GitHub-Event header; only push events deploy")
		return
	default:
		ignored("%q event; only push events deploy", ev)
		return
	}
	var push pushEvent
	if err := json.Unmarshal(body, &push); err != nil {
		http.Error(w, "push payload is not JSON: "+err.Error()+" (set the webhook's content type to application/json)", http.StatusBadRequest)
		return
	}
	if reason := src.pushIgnored(push); reason != "" {
		ignored("%s", reason)
		return
	}
	// The delivery id is not signed: a replay can change it. The body is,
	// so its digest (the signature) catches a replayed payload whatever
	// its delivery header says.
	build, seen := dep.webhookDeploy(r.Header.Get("X-GitHub-Delivery"), want)
	if seen {
		ignored("this delivery was deployed before (a redelivery or a replay)")
		return
	}
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "build %d\n", build)
}

// pushIgnored says why a push does not deploy the service; "" if it does.
// A push deploys when its ref is the branch or tag the service builds or,
// with no ref configured, the repository's default branch.
func (g *GitSource) pushIgnored(push pushEvent) string {
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
