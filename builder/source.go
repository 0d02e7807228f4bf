package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Source is where a service's code comes from: a public git repository
// reached over https (or http), the branch, tag or full commit SHA to build
// (empty: the repository's default branch) and the directory inside the
// repository that holds the app (empty: the repository's root), for monorepos.
type Source struct {
	URL     string
	Ref     string
	RootDir string
}

var (
	fullSHA    = regexp.MustCompile(`^[0-9a-f]{40}$`)
	partialSHA = regexp.MustCompile(`^[0-9a-f]{4,39}$`)
)

// validate checks the fields without touching the network and returns the
// source with RootDir cleaned ("./web/" becomes "web", "/" becomes "").
func (s Source) validate() (Source, error) {
	if err := validateURL(s.URL); err != nil {
		return s, err
	}
	if err := validateRef(s.Ref); err != nil {
		return s, err
	}
	root, err := cleanRootDir(s.RootDir)
	if err != nil {
		return s, err
	}
	s.RootDir = root
	return s, nil
}

func validateURL(raw string) error {
	bad := func(reason string) error {
		return &InputError{Field: "url", Value: raw, Reason: reason}
	}
	if strings.TrimSpace(raw) == "" {
		return bad("is required: give the https URL of a public git repository, e.g. https://github.com/owner/repo")
	}
	if len(raw) > 2048 {
		return bad("is too long (more than 2048 characters)")
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return bad("is malformed: it contains whitespace")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return &InputError{Field: "url", Value: raw, Reason: "is malformed: " + unwrapURLError(err), Err: err}
	}
	switch u.Scheme {
	case "https", "http":
	case "":
		return bad("is malformed: it needs a scheme, e.g. https://github.com/owner/repo")
	default:
		return bad(fmt.Sprintf("uses the %s scheme: only https:// (or http://) URLs of public repositories can be built", u.Scheme))
	}
	if u.Host == "" || u.Hostname() == "" {
		return bad("is malformed: it has no host")
	}
	if u.User != nil {
		return bad("contains credentials: only public repositories can be built, remove the user:password@ part")
	}
	if u.Fragment != "" || u.RawQuery != "" {
		return bad("is malformed: a repository URL has no ?query or #fragment")
	}
	if strings.Trim(u.Path, "/") == "" {
		return bad("is malformed: it names a host but no repository path, e.g. https://github.com/owner/repo")
	}
	return nil
}

func unwrapURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// validateRef applies git's rules for reference names (git check-ref-format),
// loosely: enough that a ref we pass on can only name a ref.
func validateRef(ref string) error {
	if ref == "" {
		return nil
	}
	bad := func(reason string) error {
		return &InputError{Field: "ref", Value: ref, Reason: reason}
	}
	if len(ref) > 255 {
		return bad("is too long: use a branch or tag name, or a full commit SHA")
	}
	for _, r := range ref {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return bad(fmt.Sprintf("is not a valid branch, tag or commit: it contains %q", r))
		}
	}
	if strings.HasPrefix(ref, "-") || strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") ||
		strings.HasSuffix(ref, ".") || strings.HasSuffix(ref, ".lock") ||
		strings.Contains(ref, "..") || strings.Contains(ref, "//") || strings.Contains(ref, "@{") {
		return bad("is not a valid branch, tag or commit name")
	}
	return nil
}

func cleanRootDir(dir string) (string, error) {
	if dir == "" {
		return "", nil
	}
	bad := func(reason string) error {
		return &InputError{Field: "root_dir", Value: dir, Reason: reason}
	}
	if strings.ContainsFunc(dir, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", bad("contains control characters")
	}
	if strings.ContainsRune(dir, '\\') {
		return "", bad("is not a valid path: use forward slashes, e.g. apps/web")
	}
	// "/web" and "./web/" both mean the repository's web directory.
	clean := path.Clean("/" + dir)
	for _, part := range strings.Split(dir, "/") {
		if part == ".." {
			return "", bad("must stay inside the repository: remove the '..'")
		}
	}
	clean = strings.TrimPrefix(clean, "/")
	if clean == "" || clean == "." {
		return "", nil
	}
	for _, part := range strings.Split(clean, "/") {
		if part == ".git" {
			return "", bad("points into the .git directory")
		}
	}
	return clean, nil
}

// resolveRootDir returns the absolute directory of root inside the checkout
// at dir. Symbolic links are followed only within the checkout, so a link in
// the repository cannot make the build context a host directory.
func resolveRootDir(dir, root string) (string, error) {
	if root == "" {
		return dir, nil
	}
	p, err := securejoin.SecureJoin(dir, root)
	if err != nil {
		return "", &InputError{Field: "root_dir", Value: root, Reason: "cannot be resolved in the repository", Err: err}
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", &InputError{Field: "root_dir", Value: root, Reason: "does not exist in the repository at this ref"}
	case err != nil:
		return "", &InputError{Field: "root_dir", Value: root, Reason: "cannot be read", Err: err}
	case !fi.IsDir():
		return "", &InputError{Field: "root_dir", Value: root, Reason: "is a file, not a directory"}
	}
	return p, nil
}

// clone checks out src (validated) into dir, a path that does not exist yet,
// with the history cut to the one commit built, and returns that commit's
// SHA. Progress and notes go to log, one line at a time. The server may send
// at most lim.bytes (the clone stops when it sends more), and the commit's
// files are checked against lim before any is written.
func clone(ctx context.Context, src Source, dir string, log io.Writer, lim repoLimits) (string, error) {
	ctx, rx := withReceiveLimit(ctx, lim.bytes)
	commit, err := cloneLimited(ctx, src, dir, log, lim)
	if err != nil && rx.exceeded() {
		return "", repoBytesTooLarge(src, fmt.Sprintf("its server sent more than %s for this commit", formatBytes(lim.bytes)), lim.bytes)
	}
	return commit, err
}

func cloneLimited(ctx context.Context, src Source, dir string, log io.Writer, lim repoLimits) (string, error) {
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{src.URL}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{})
	if err != nil {
		return "", remoteError(ctx, src, err)
	}
	name, err := resolveRef(src.Ref, refs)
	if err != nil {
		return "", err
	}
	switch {
	case name == plumbing.HEAD:
		fmt.Fprintf(log, "==> Cloning %s (default branch)\n", src.URL)
	case name != "":
		fmt.Fprintf(log, "==> Cloning %s (%s)\n", src.URL, name)
	default:
		fmt.Fprintf(log, "==> Cloning %s (commit %s)\n", src.URL, src.Ref)
		return fetchCommit(ctx, src, dir, log, lim)
	}
	st, wt := repoStorage(dir)
	defer st.Close()
	// No checkout yet: the commit's size is checked first.
	repo, err := git.CloneContext(ctx, st, wt, &git.CloneOptions{
		URL:           src.URL,
		ReferenceName: name,
		SingleBranch:  true,
		Depth:         1,
		Tags:          git.NoTags,
		NoCheckout:    true,
		Progress:      log,
	})
	if err != nil {
		return "", remoteError(ctx, src, err)
	}
	head, err := repo.Head()
	if err != nil {
		return "", fmt.Errorf("clone %s: read HEAD: %w", src.URL, err)
	}
	commit, err := peel(repo, head.Hash())
	if err != nil {
		return "", fmt.Errorf("clone %s: %w", src.URL, err)
	}
	if err := checkTreeSize(repo, commit, lim, src); err != nil {
		return "", err
	}
	w, err := repo.Worktree()
	if err != nil {
		return "", err
	}
	// What go-git's clone does to check out.
	if err := w.Reset(&git.ResetOptions{Mode: git.MergeReset, Commit: commit}); err != nil {
		return "", fmt.Errorf("clone %s: check out %s: %w", src.URL, commit, err)
	}
	return commit.String(), nil
}

// repoStorage is where a clone into dir (a path that does not exist yet)
// keeps its objects and files: what git.PlainInit sets up, with the pack's
// file kept open and the object list cached (nothing else writes to it),
// since checkTreeSize looks up every file's size in the pack. Close releases
// the pack.
func repoStorage(dir string) (*filesystem.Storage, billy.Filesystem) {
	wt := osfs.New(dir)
	dot, _ := wt.Chroot(git.GitDirName)
	return filesystem.NewStorageWithOptions(dot, cache.NewObjectLRUDefault(), filesystem.Options{KeepDescriptors: true, ExclusiveAccess: true, LargeObjectThreshold: 1 << 20}), wt
}

// resolveRef finds what to clone for ref among the remote's refs: HEAD for
// the default branch, a branch or tag, or "" for a full commit SHA that no
// branch or tag is named after.
func resolveRef(ref string, refs []*plumbing.Reference) (plumbing.ReferenceName, error) {
	have := make(map[plumbing.ReferenceName]bool, len(refs))
	var branches, tags []string
	for _, r := range refs {
		n := r.Name()
		have[n] = true
		switch {
		case n.IsBranch():
			branches = append(branches, n.Short())
		case n.IsTag() && !strings.HasSuffix(string(n), "^{}"):
			tags = append(tags, n.Short())
		}
	}
	if ref == "" {
		if !have[plumbing.HEAD] && len(branches) == 0 {
			return "", &InputError{Field: "url", Reason: "names a repository without branches: push a commit first"}
		}
		return plumbing.HEAD, nil
	}
	candidates := []plumbing.ReferenceName{plumbing.NewBranchReferenceName(ref), plumbing.NewTagReferenceName(ref)}
	if strings.HasPrefix(ref, "refs/") {
		candidates = []plumbing.ReferenceName{plumbing.ReferenceName(ref)}
	}
	for _, c := range candidates {
		if have[c] && (c.IsBranch() || c.IsTag()) {
			return c, nil
		}
	}
	if fullSHA.MatchString(ref) {
		return "", nil
	}
	reason := "was not found: the repository has no branch or tag of that name"
	if partialSHA.MatchString(ref) {
		reason += " (to build a commit, give its full 40-character SHA)"
	}
	reason += "; " + listNames("branches", branches) + "; " + listNames("tags", tags)
	return "", &InputError{Field: "ref", Value: ref, Reason: reason}
}

func listNames(kind string, names []string) string {
	if len(names) == 0 {
		return "no " + kind
	}
	sort.Strings(names)
	more := ""
	if len(names) > 10 {
		more = fmt.Sprintf(" and %d more", len(names)-10)
		names = names[:10]
	}
	return kind + ": " + strings.Join(names, ", ") + more
}

// fetchCommit checks out one commit given by its full SHA. Servers that
// allow it (GitHub does) send just that commit; others (git upload-pack's
// default) refuse to serve an unadvertised object, and then all branches
// are fetched in full and the commit looked up among them.
func fetchCommit(ctx context.Context, src Source, dir string, log io.Writer, lim repoLimits) (string, error) {
	st, wt := repoStorage(dir)
	defer st.Close()
	repo, err := git.Init(st, wt)
	if err != nil {
		return "", err
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{src.URL}}); err != nil {
		return "", err
	}
	want := plumbing.NewHash(src.Ref)
	err = repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec(src.Ref + ":refs/heads/podcell-build")},
		Depth:      1,
		Tags:       git.NoTags,
		Progress:   log,
	})
	if err != nil {
		if ctx.Err() != nil || isRemoteAccessError(err) || receiveLimitFrom(ctx).exceeded() {
			return "", remoteError(ctx, src, err)
		}
		fmt.Fprintf(log, "==> Fetching the commit alone failed (%v); fetching all branches to find it\n", err)
		err = repo.FetchContext(ctx, &git.FetchOptions{
			RemoteName: "origin",
			RefSpecs:   []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*"},
			Tags:       git.NoTags,
			Progress:   log,
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return "", remoteError(ctx, src, err)
		}
	}
	commit, err := repo.CommitObject(want)
	if err != nil {
		return "", &InputError{Field: "ref", Value: src.Ref, Reason: "was not found: no branch of the repository contains this commit"}
	}
	if err := checkTreeSize(repo, commit.Hash, lim, src); err != nil {
		return "", err
	}
	w, err := repo.Worktree()
	if err != nil {
		return "", err
	}
	if err := w.Checkout(&git.CheckoutOptions{Hash: commit.Hash, Force: true}); err != nil {
		return "", fmt.Errorf("check out %s: %w", src.Ref, err)
	}
	return commit.Hash.String(), nil
}

// peel follows annotated tags to the commit they name.
func peel(repo *git.Repository, h plumbing.Hash) (plumbing.Hash, error) {
	for i := 0; i < 10; i++ {
		tag, err := repo.TagObject(h)
		if err != nil {
			break
		}
		h = tag.Target
	}
	if _, err := repo.CommitObject(h); err != nil {
		return h, fmt.Errorf("%s is not a commit: %w", h, err)
	}
	return h, nil
}

func isRemoteAccessError(err error) bool {
	return errors.Is(err, transport.ErrRepositoryNotFound) ||
		errors.Is(err, transport.ErrAuthenticationRequired) ||
		errors.Is(err, transport.ErrAuthorizationFailed) ||
		errors.Is(err, transport.ErrEmptyRemoteRepository)
}

// remoteError explains a failure to talk to the repository's server.
func remoteError(ctx context.Context, src Source, err error) error {
	switch {
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return &InputError{Field: "url", Value: src.URL, Reason: "was not found (HTTP 404): check the owner and repository name; only public repositories can be built", Err: err}
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return &InputError{Field: "url", Value: src.URL, Reason: "asks for credentials: the repository is private or does not exist; only public repositories can be built", Err: err}
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return &InputError{Field: "url", Value: src.URL, Reason: "names an empty repository: push a commit first", Err: err}
	case errors.Is(err, pktline.ErrInvalidPktLen):
		return &InputError{Field: "url", Value: src.URL, Reason: "does not answer as a git repository: check the URL", Err: err}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("clone %s: timed out: %w", src.URL, ctx.Err())
	case ctx.Err() != nil:
		return fmt.Errorf("clone %s: %w", src.URL, ctx.Err())
	}
	return fmt.Errorf("clone %s: %w", src.URL, serverError{err})
}

// serverError is an error whose text may come from the repository's server
// (a sideband "ERR" message, an HTTP body): its control characters are
// dropped, so that a log or a terminal shows it as text (go-git kept the
// NUL that ends such a message; a hostile server could send terminal
// escapes).
type serverError struct{ err error }

func (e serverError) Error() string { return printable(e.err.Error()) }
func (e serverError) Unwrap() error { return e.err }

// printable is s without control characters; tabs become spaces.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			return -1
		}
		return r
	}, s)
}

// Resolve returns the commit SHA that src's ref points to now, without
// cloning: auto-deploy compares it with the last build's commit. The list of
// refs the server sends counts against MaxRepoBytes as a clone's does.
func (b *Builder) Resolve(ctx context.Context, src Source) (string, error) {
	src, err := src.validate()
	if err != nil {
		return "", err
	}
	ctx, rx := withReceiveLimit(ctx, b.opts.MaxRepoBytes)
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{src.URL}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{})
	if err != nil {
		if rx.exceeded() {
			return "", repoBytesTooLarge(src, fmt.Sprintf("its server sent more than %s listing its refs", formatBytes(b.opts.MaxRepoBytes)), b.opts.MaxRepoBytes)
		}
		return "", remoteError(ctx, src, err)
	}
	name, err := resolveRef(src.Ref, refs)
	if err != nil {
		return "", err
	}
	if name == "" {
		return src.Ref, nil // a commit SHA does not move
	}
	byName := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, r := range refs {
		byName[r.Name()] = r
	}
	// An annotated tag is listed twice: the tag object, and peeled (^{})
	// the commit it names, which is what a build checks out.
	if peeled := byName[name+"^{}"]; peeled != nil {
		return peeled.Hash().String(), nil
	}
	r := byName[name]
	for i := 0; r != nil && r.Type() == plumbing.SymbolicReference && i < 5; i++ {
		r = byName[r.Target()]
	}
	if r == nil || r.Hash().IsZero() {
		return "", fmt.Errorf("resolve %s in %s: the remote did not list it", name, src.URL)
	}
	return r.Hash().String(), nil
}
