package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// Default repository limits (Options.MaxRepoBytes, Options.MaxRepoFiles).
// A clone is several times the repository's size in memory while go-git
// resolves the pack, and MaxClones clones run at once.
const (
	DefaultMaxRepoBytes = 1 << 30
	DefaultMaxRepoFiles = 200000
)

// repoLimits bound one clone: the bytes the server sends (after HTTP
// decompression) and the files checked out (their total size, and how many
// files and directories). Zero means no limit.
type repoLimits struct {
	bytes int64
	files int
}

// repoTooLarge is the error for a repository over a limit: what it
// passed, and the global option that sets the limit with the value in
// effect, so the operator knows what to raise.
func repoTooLarge(src Source, what, option string) error {
	return &InputError{Field: "url", Value: src.URL, Reason: "names a repository over podcell's size limit: " + what +
		"; build a smaller repository (or a root_dir of a smaller one), or raise podcell's global option " + option}
}

// repoBytesTooLarge is repoTooLarge for the byte limit max (max_repo_size).
func repoBytesTooLarge(src Source, what string, max int64) error {
	return repoTooLarge(src, what, fmt.Sprintf("max_repo_size (max_repo_mb in JSON), now %s", formatBytes(max)))
}

// repoFilesTooLarge is repoTooLarge for the limit of max files and
// directories (max_repo_files).
func repoFilesTooLarge(src Source, max int) error {
	return repoTooLarge(src, fmt.Sprintf("the commit holds more than %d files and directories", max), fmt.Sprintf("max_repo_files, now %d", max))
}

// receiveLimit counts the bytes of HTTP response bodies read for one clone.
// It travels in the clone's context, where limitTransport finds it.
type receiveLimit struct {
	max  int64
	n    atomic.Int64
	over atomic.Bool
}

type receiveLimitKey struct{}

var errReceiveLimit = errors.New("the repository's server sent more than the size limit allows")

// withReceiveLimit returns ctx carrying a limit of max bytes received (none
// if max <= 0), and that limit, to ask afterwards whether it cut the clone.
func withReceiveLimit(ctx context.Context, max int64) (context.Context, *receiveLimit) {
	installLimitTransport()
	if max <= 0 {
		return ctx, nil
	}
	l := &receiveLimit{max: max}
	return context.WithValue(ctx, receiveLimitKey{}, l), l
}

// receiveLimitFrom returns the limit ctx carries, or nil.
func receiveLimitFrom(ctx context.Context) *receiveLimit {
	l, _ := ctx.Value(receiveLimitKey{}).(*receiveLimit)
	return l
}

// exceeded reports whether the limit cut a read; false for no limit (nil).
func (l *receiveLimit) exceeded() bool { return l != nil && l.over.Load() }

var installLimitOnce sync.Once

// installLimitTransport makes go-git's http and https transports count the
// bytes of each response body against the limit its request's context
// carries. go-git picks a transport by URL scheme from a process-wide table
// (client.InstallProtocol) and has no per-clone option for it in v5, so the
// transport is replaced for the whole process, once. It is go-git's default
// (a net/http client on http.DefaultTransport, see githttp.NewClient) with
// only the bodies wrapped, and it limits nothing for a request whose context
// carries no limit: any other user of go-git in the process sees no change,
// except that endpoint-specific TLS or proxy options, which need the client's
// transport to be an *http.Transport, are not available (podcell sets none).
func installLimitTransport() {
	installLimitOnce.Do(func() {
		t := githttp.NewClient(&http.Client{Transport: limitTransport{base: http.DefaultTransport}})
		client.InstallProtocol("https", t)
		client.InstallProtocol("http", t)
	})
}

// limitTransport wraps the response bodies of requests made with a
// receiveLimit in their context.
type limitTransport struct{ base http.RoundTripper }

func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if l := receiveLimitFrom(req.Context()); l != nil {
		resp.Body = &limitedBody{ReadCloser: resp.Body, l: l}
	}
	return resp, nil
}

// limitedBody fails a read once the clone's bodies together went past the
// limit, so go-git stops while receiving, not after.
type limitedBody struct {
	io.ReadCloser
	l *receiveLimit
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.l.over.Load() {
		return 0, errReceiveLimit
	}
	n, err := b.ReadCloser.Read(p)
	if b.l.n.Add(int64(n)) > b.l.max {
		b.l.over.Store(true)
		return n, errReceiveLimit
	}
	return n, err
}

// checkTreeSize sums the sizes of the files of commit's tree, read from the
// object headers (nothing is decompressed), and counts its files and
// directories, stopping at the first limit passed. It runs between the
// fetch and the checkout: a pack of a few kilobytes can hold a gigabyte of
// zeros, or a tree that names one subtree many times over at each level
// (a "git bomb": billions of files from a tiny pack).
func checkTreeSize(repo *git.Repository, commit plumbing.Hash, lim repoLimits, src Source) error {
	if lim.bytes <= 0 && lim.files <= 0 {
		return nil
	}
	c, err := repo.CommitObject(commit)
	if err != nil {
		return err
	}
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	var total int64
	files := 0
	sizes := make(map[plumbing.Hash]int64) // a blob is looked up once, however many files it is
	for {
		name, e, err := w.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the tree of %s: %w", commit, err)
		}
		files++
		if lim.files > 0 && files > lim.files {
			return repoFilesTooLarge(src, lim.files)
		}
		if !e.Mode.IsFile() {
			continue // a directory, or a submodule (checked out empty)
		}
		size, ok := sizes[e.Hash]
		if !ok {
			if size, err = repo.Storer.EncodedObjectSize(e.Hash); err != nil {
				return fmt.Errorf("read the size of %s: %w", name, err)
			}
			sizes[e.Hash] = size
		}
		total += size
		if lim.bytes > 0 && total > lim.bytes {
			return repoBytesTooLarge(src, fmt.Sprintf("the commit's files add up to more than %s (reached at %s)", formatBytes(lim.bytes), name), lim.bytes)
		}
	}
}
