// Package scalertest gives tests and benchmarks a scaler.Runtime: Fake, in
// memory, for tests that need no Podman; or a real Podman runtime (Podman)
// and the hello image (cmd/hello, built locally so no registry is needed).
// Nothing here contacts Podman or builds anything until a test asks
// (Podman, Hello, BuildHello).
package scalertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/containers/buildah/define"
	"github.com/containers/podman/v5/pkg/bindings/images"
	"github.com/containers/podman/v5/pkg/domain/entities/types"

	"github.com/podcell/podcell/scaler"
)

// HelloImage is the tag of the image built from cmd/hello.
const HelloImage = "localhost/podcell-hello:test"

// helloRepo and the source hash make a second, per-source tag: tests of
// other checkouts sharing this Podman rebuild HelloImage with their own
// cmd/hello, and a container started mid-test must not get theirs.
const helloRepo = "localhost/podcell-hello"

// URI is the Podman API address tests use: $PODCELL_PODMAN_URI or the
// rootful default.
func URI() string {
	if u := os.Getenv("PODCELL_PODMAN_URI"); u != "" {
		return u
	}
	return scaler.DefaultPodmanURI
}

// Podman connects to the Podman API. Without one the test is skipped with a
// message naming the fix, except under CI (CI=true), where Podman must exist
// and its absence fails the test.
func Podman(t testing.TB) *scaler.Podman {
	t.Helper()
	uri := URI()
	unreachableMu.Lock()
	err := unreachable[uri]
	unreachableMu.Unlock()
	var p *scaler.Podman
	if err == nil {
		if p, err = scaler.NewPodman(context.Background(), uri); err != nil {
			unreachableMu.Lock()
			unreachable[uri] = err
			unreachableMu.Unlock()
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs Podman: %v", err)
		}
		t.Skipf("no Podman API (run scripts/setup-host.sh as root): %v", err)
	}
	return p
}

// unreachable remembers the Podman APIs that did not answer, so the next
// test skips at once instead of waiting for the client's own retries.
var (
	unreachableMu sync.Mutex
	unreachable   = map[string]error{}
)

var (
	buildOnce sync.Once
	buildTag  string
	buildErr  error
)

// Hello builds (once per process, and only when its source changed) the
// hello image and returns a tag that names this source's build.
func Hello(t testing.TB, p *scaler.Podman) string {
	t.Helper()
	buildOnce.Do(func() { buildTag, buildErr = buildHello(context.Background(), p) })
	if buildErr != nil {
		t.Fatalf("build hello image: %v", buildErr)
	}
	return buildTag
}

// RepoRoot is the module's root directory, found from this file's path.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// BuildHello compiles cmd/hello statically and builds a FROM scratch image
// of it through the Podman API. It skips the build if an image with the same
// binary exists.
func BuildHello(ctx context.Context, p *scaler.Podman) error {
	_, err := buildHello(ctx, p)
	return err
}

// buildHello is BuildHello; it also tags the image by its source hash and
// returns that tag.
func buildHello(ctx context.Context, p *scaler.Podman) (string, error) {
	dir, err := os.MkdirTemp("", "podcell-hello-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "hello"), "./cmd/hello")
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/hello: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "hello"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(bin)
	hash := hex.EncodeToString(sum[:8])
	tag := helloRepo + ":test-" + hash
	bctx := p.BindingsContext(ctx)
	if _, err := images.GetImage(bctx, tag, nil); err == nil {
		return tag, images.Tag(bctx, tag, "test", helloRepo, nil)
	}
	if img, err := images.GetImage(bctx, HelloImage, nil); err == nil && img.Labels["podcell.hello.hash"] == hash {
		return tag, images.Tag(bctx, img.ID, "test-"+hash, helloRepo, nil)
	}
	containerfile := "FROM scratch\nCOPY hello /hello\nUSER 65534:65534\nENTRYPOINT [\"/hello\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		return "", err
	}
	var out bytes.Buffer
	bctx, cancel := context.WithTimeout(bctx, 5*time.Minute)
	defer cancel()
	report, err := images.Build(bctx, []string{filepath.Join(dir, "Containerfile")}, types.BuildOptions{BuildOptions: define.BuildOptions{
		ContextDirectory: dir,
		Output:           HelloImage,
		Labels:           []string{"podcell.hello.hash=" + hash},
		Out:              &out,
		Err:              &out,
		ReportWriter:     &out,
	}})
	if err != nil {
		return "", fmt.Errorf("podman build: %v\n%s", err, out.String())
	}
	// By ID: HelloImage may already be another checkout's build again.
	return tag, images.Tag(bctx, report.ID, "test-"+hash, helloRepo, nil)
}

// Eventually polls cond every 20 ms until it holds, failing the test with
// what if it does not within the given time.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
