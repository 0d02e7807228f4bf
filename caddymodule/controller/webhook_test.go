package controller

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeDeployer counts the deploys a webhook starts, behind the deployer's
// own delivery log.
type fakeDeployer struct {
	log    deliveryLog
	builds int
}

func (f *fakeDeployer) webhookDeploy(delivery, digest string) (int, bool) {
	if !f.log.add(delivery, digest) {
		return 0, true
	}
	f.builds++
	return f.builds, false
}

// sendHook posts body as a GitHub delivery signed with secret.
func sendHook(src *GitSource, key string, dep webhookDeployer, secret, event, delivery, body string) (int, string) {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	r := httptest.NewRequest("POST", "/_hook", strings.NewReader(body))
	if event != "" {
		r.Header.Set("X-GitHub-Event", event)
	}
	if delivery != "" {
		r.Header.Set("X-GitHub-Delivery", delivery)
	}
	r.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	w := httptest.NewRecorder()
	serveWebhook(w, r, src, key, dep)
	return w.Code, w.Body.String()
}

// Only a signed push to the deployed branch deploys, once per delivery;
// every other signed event is acknowledged and deploys nothing.
func TestWebhookDeploysOnlyPushesToTheRef(t *testing.T) {
	src := &GitSource{Ref: "main", WebhookPath: "/_hook", WebhookSecret: "s3cret"}
	const key = "s3cret"
	dep := &fakeDeployer{}
	push := `{"ref":"refs/heads/main","after":"1111111111111111111111111111111111111111","repository":{"default_branch":"main","pushed_at":1}}`
	for _, c := range []struct {
		name, secret, event, delivery, body string
		code                                int
		says                                string
	}{
		{"bad signature", "wrong", "push", "d0", push, http.StatusUnauthorized, "bad signature"},
		{"ping", "s3cret", "ping", "d1", `{"zen":"hi","hook_id":1}`, http.StatusOK, "pong"},
		// These carry the deployed ref too: the event decides, not the body.
		{"star", "s3cret", "star", "d2", `{"action":"created","ref":"refs/heads/main"}`, http.StatusOK, `"star" event`},
		{"issues", "s3cret", "issues", "d3", `{"action":"opened","issue":{"number":1}}`, http.StatusOK, `"issues" event`},
		{"pull_request", "s3cret", "pull_request", "d4", `{"action":"opened","ref":"refs/heads/main","pull_request":{"head":{"ref":"main"}}}`, http.StatusOK, `"pull_request" event`},
		{"no event header", "s3cret", "", "d5", push, http.StatusOK, "no X-GitHub-Event"},
		{"push to another branch", "s3cret", "push", "d6", `{"ref":"refs/heads/evil","repository":{"default_branch":"main"}}`, http.StatusOK, "push to refs/heads/evil"},
		{"push without a ref", "s3cret", "push", "d7", `{"repository":{"default_branch":"main"}}`, http.StatusOK, "without a ref"},
		{"push deleting the branch", "s3cret", "push", "d8", `{"ref":"refs/heads/main","deleted":true}`, http.StatusOK, "deletes"},
		{"push, not JSON", "s3cret", "push", "d9", `ref=refs/heads/main`, http.StatusBadRequest, "not JSON"},
	} {
		code, body := sendHook(src, key, dep, c.secret, c.event, c.delivery, c.body)
		if code != c.code || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %q, want %d saying %q", c.name, code, body, c.code, c.says)
		}
		if code == http.StatusOK && c.event != "ping" && !strings.HasPrefix(body, "ignored: ") {
			t.Errorf("%s: body %q does not say it was ignored", c.name, body)
		}
	}
	if dep.builds != 0 {
		t.Fatalf("%d builds from events that are not a push to main", dep.builds)
	}

	// The push to main deploys; the same delivery three times more does not,
	// nor the same signed body under a new delivery id (the id is not signed).
	if code, body := sendHook(src, key, dep, "s3cret", "push", "d10", push); code != http.StatusAccepted || body != "build 1\n" {
		t.Fatalf("push to main: %d %q, want 202 build 1", code, body)
	}
	for i := range 3 {
		if code, body := sendHook(src, key, dep, "s3cret", "push", "d10", push); code != http.StatusOK || !strings.Contains(body, "deployed before") {
			t.Errorf("redelivery %d: %d %q, want 200 ignored", i+1, code, body)
		}
	}
	if code, body := sendHook(src, key, dep, "s3cret", "push", "forged-id", push); code != http.StatusOK || !strings.Contains(body, "deployed before") {
		t.Errorf("replayed body with a new delivery id: %d %q, want 200 ignored", code, body)
	}
	if dep.builds != 1 {
		t.Fatalf("%d builds, want exactly 1", dep.builds)
	}

	// A new push without a delivery id deploys; its replay does not.
	push2 := strings.Replace(push, `"pushed_at":1`, `"pushed_at":2`, 1)
	for i, want := range []int{http.StatusAccepted, http.StatusOK} {
		if code, body := sendHook(src, key, dep, "s3cret", "push", "", push2); code != want {
			t.Errorf("push without a delivery id, send %d: %d %q, want %d", i+1, code, body, want)
		}
	}
	if dep.builds != 2 {
		t.Errorf("%d builds, want 2", dep.builds)
	}
}

func TestWebhookRefs(t *testing.T) {
	pushTo := func(ref, def string) string {
		return fmt.Sprintf(`{"ref":%q,"repository":{"default_branch":%q}}`, ref, def)
	}
	for _, c := range []struct {
		ref, body string
		deploy    bool
	}{
		{"", pushTo("refs/heads/trunk", "trunk"), true},
		{"", pushTo("refs/heads/dev", "trunk"), false},
		{"", pushTo("refs/tags/trunk", "trunk"), false},
		{"", `{"ref":"refs/heads/main"}`, false}, // no default_branch: cannot tell
		{"v1.0", pushTo("refs/tags/v1.0", "main"), true},
		{"v1.0", pushTo("refs/tags/v1.1", "main"), false},
		{"main", pushTo("refs/heads/main", "trunk"), true},
		{"main", pushTo("refs/heads/mainx", "main"), false},
		{strings.Repeat("a", 40), pushTo("refs/heads/main", "main"), false},
	} {
		src := &GitSource{Ref: c.ref, WebhookPath: "/_hook"}
		const key = "k"
		dep := &fakeDeployer{}
		code, body := sendHook(src, key, dep, "k", "push", "id", c.body)
		if deployed := dep.builds == 1; deployed != c.deploy {
			t.Errorf("ref %q, payload %s: %d %q; want deployed=%v", c.ref, c.body, code, body, c.deploy)
		}
	}
}

// A webhook whose secret was never loaded verifies nothing: an empty HMAC
// key would let anyone sign.
func TestWebhookWithoutSecretRefuses(t *testing.T) {
	src := &GitSource{WebhookPath: "/_hook", WebhookSecret: "{env.UNSET}"}
	const key = ""
	dep := &fakeDeployer{}
	if code, _ := sendHook(src, key, dep, "", "push", "id", `{"ref":"refs/heads/main","repository":{"default_branch":"main"}}`); code != http.StatusServiceUnavailable || dep.builds != 0 {
		t.Errorf("signed with the empty key: %d, %d builds; want 503 and none", code, dep.builds)
	}
}

// The delivery log stays bounded and keeps the newest deliveries.
func TestDeliveryLogBounded(t *testing.T) {
	var l deliveryLog
	for i := range 10 * keptDeliveries {
		if !l.add(fmt.Sprint("id", i), fmt.Sprint("digest", i)) {
			t.Fatalf("delivery %d taken for a repeat", i)
		}
		if len(l.seen) > 4*keptDeliveries || len(l.order) != len(l.seen) {
			t.Fatalf("after %d deliveries: %d keys, %d in order; want at most %d", i+1, len(l.seen), len(l.order), 4*keptDeliveries)
		}
	}
	last := 10*keptDeliveries - 1
	for i := last - keptDeliveries + 1; i <= last; i++ {
		if l.add(fmt.Sprint("id", i), "new") || l.add("new", fmt.Sprint("digest", i)) {
			t.Fatalf("delivery %d, among the last %d, was forgotten", i, keptDeliveries)
		}
	}
	if !l.add("id0", "digest0") {
		t.Errorf("the oldest delivery is still remembered")
	}
}
