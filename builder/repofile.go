package builder

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// A repository is hostile input: podcell builds as root whatever one holds.
// Git stores symbolic links, and go-git checks relative ones out as they are
// (it only rewrites absolute targets into the checkout), so a link in a
// repository can point at any host file. This file holds the rules that keep
// such links from making podcell read or write a host file:
//
//   - the files podcell reads or detects (repoDir) must be regular files no
//     larger than maxRepoFileBytes, opened without following links and
//     without blocking on a FIFO or device;
//   - the build context handed to Podman (buildContext) is a tree podcell
//     makes itself beside the checkout, holding the generated Containerfile
//     and hard links to the app's files; a link of the repository is copied
//     into it only if it resolves inside the context, and special files
//     (which a git checkout cannot create) are refused.

// maxRepoFileBytes bounds each file podcell reads from a repository
// (package.json, requirements.txt, Procfile, ignore files): it reads them
// into memory, and none of them is anywhere near this large in a real app.
const maxRepoFileBytes = 1 << 20

// fileError is the error for a file of the repository podcell refuses:
// field "file", the file's path in the repository.
func fileError(path, reason string) *InputError {
	return &InputError{Field: "file", Value: path, Reason: reason}
}

// repoDir is the app's directory in a checkout (the build context before
// podcell copies it), as detection reads it: files by name, never through a
// link. A refused file is remembered in err, the first one only, so that
// detection can read on as if the file were absent and the caller returns
// the error before anything is built.
type repoDir struct {
	dir  string // absolute, symbolic links resolved (within the checkout)
	root string // the app's directory in the repository ("" = its root), for messages
	err  error
}

// rel is name's path in the repository, as errors name it.
func (r *repoDir) rel(name string) string {
	if r.root == "" {
		return name
	}
	return path.Join(r.root, name)
}

func (r *repoDir) refuse(err error) {
	if r.err == nil {
		r.err = err
	}
}

// have reports whether name is a regular file of the app's directory. A
// symbolic link or a special file there is refused (remembered in r.err):
// the files podcell looks for decide what the build copies and runs, so a
// link there is most likely an attempt to make podcell read a host file. A
// directory of that name counts as absent.
func (r *repoDir) have(name string) bool {
	fi, err := os.Lstat(filepath.Join(r.dir, name))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.refuse(fileError(r.rel(name), "cannot be read: "+err.Error()))
		}
		return false
	}
	if fi.IsDir() {
		return false
	}
	if err := r.notRegular(name, fi); err != nil {
		r.refuse(err)
		return false
	}
	return true
}

// notRegular explains why fi (of name) is not a file podcell reads, or
// returns nil for a regular file.
func (r *repoDir) notRegular(name string, fi fs.FileInfo) error {
	switch m := fi.Mode(); {
	case m.IsRegular():
		return nil
	case m&fs.ModeSymlink != 0:
		target, _ := os.Readlink(filepath.Join(r.dir, name))
		return fileError(r.rel(name), fmt.Sprintf("is a symbolic link (to %q): podcell reads no file of a repository through a link; commit the file itself", target))
	default:
		return fileError(r.rel(name), fmt.Sprintf("is not a regular file (%s): commit a regular file", fileKind(m)))
	}
}

// read returns the content of name if it is a regular file of the app's
// directory, or nil if there is none. A link, a special file or a file
// over maxRepoFileBytes is refused (remembered in r.err, nil returned).
func (r *repoDir) read(name string) []byte {
	if !r.have(name) {
		return nil
	}
	data, err := readRegular(filepath.Join(r.dir, name), maxRepoFileBytes)
	if err != nil {
		var ne *notRegularError
		switch {
		case errors.As(err, &ne):
			// Replaced between the Lstat and the open: explain what is there now.
			r.refuse(r.notRegular(name, ne.fi))
		case errors.Is(err, errTooLarge):
			r.refuse(fileError(r.rel(name), fmt.Sprintf("is larger than %s, the most podcell reads of a file it detects: make it smaller", formatBytes(maxRepoFileBytes))))
		default:
			r.refuse(fileError(r.rel(name), "cannot be read: "+err.Error()))
		}
		return nil
	}
	return data
}

var errTooLarge = errors.New("file too large")

// notRegularError is what readRegular found instead of a regular file.
type notRegularError struct{ fi fs.FileInfo }

func (e *notRegularError) Error() string { return "not a regular file: " + fileKind(e.fi.Mode()) }

// readRegular reads file, at most max bytes, if it is a regular file. The
// open follows no final symbolic link (O_NOFOLLOW fails with ELOOP on one)
// and does not block (O_NONBLOCK: opening a FIFO for reading would wait for
// a writer); fstat then checks what was opened before anything is read, and
// the read stops after max+1 bytes whatever the size said.
func readRegular(file string, max int64) ([]byte, error) {
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			if fi, lerr := os.Lstat(file); lerr == nil {
				return nil, &notRegularError{fi}
			}
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &notRegularError{fi}
	}
	if fi.Size() > max {
		return nil, errTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, errTooLarge
	}
	return data, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return "a special file"
}

// buildContext makes the build context at ctx (a path that does not exist
// yet, outside the checkout): the files podcell makes (made: the
// Containerfile, the CA bundle) first, then the app's directory app
// mirrored below it: directories made anew, regular
// files hard linked (no data is copied), symbolic links made anew with the
// same target if that resolves inside the context. Nothing is created by
// following a link, so no file outside ctx is written. A link that leads
// out of the context, or a special file, is an *InputError naming it; root
// is the app's directory in the repository, for messages. The checkout's
// .git directory and a file of the app named like one of podcell's (which
// Excludes keeps out of the image anyway) are left out.
func buildContext(app, root, ctx string, made map[string][]byte) error {
	if err := os.Mkdir(ctx, 0o755); err != nil {
		return err
	}
	for name, data := range made {
		f, err := os.OpenFile(filepath.Join(ctx, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	repoPath := func(rel string) string {
		if root == "" {
			return filepath.ToSlash(rel)
		}
		return path.Join(root, filepath.ToSlash(rel))
	}
	return filepath.WalkDir(app, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(app, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if _, ours := made[rel]; rel == ".git" || ours {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(ctx, rel)
		switch t := d.Type(); {
		case t.IsDir():
			return os.Mkdir(dst, 0o755)
		case t.IsRegular():
			return os.Link(p, dst)
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := linkInside(app, rel, target); err != nil {
				return fileError(repoPath(rel), fmt.Sprintf("is a symbolic link to %q, %v: links in the build context must stay inside it; commit the files instead, or remove the link", target, err))
			}
			return os.Symlink(target, dst)
		default:
			return fileError(repoPath(rel), fmt.Sprintf("is %s: the build context holds only files, directories and links", fileKind(t)))
		}
	})
}

// maxLinkHops bounds the links followed resolving one path, as the kernel's
// 40 does; a cycle of links ends here.
const maxLinkHops = 40

// linkInside checks that the link at rel (a path relative to root) with
// target resolves inside root, link by link as the kernel would resolve it:
// each ".." and each further link is applied to the real path reached so
// far, so a chain of links that each look inside cannot climb out (a lexical
// check of the target alone would miss that). A missing component ends the
// walk (what a dangling link leads to does not exist), after checking that
// the rest of the path stays inside lexically.
func linkInside(root, rel, target string) error {
	if filepath.IsAbs(target) {
		return errors.New("an absolute path")
	}
	// cur: the resolved path so far, components below root.
	cur := strings.Split(filepath.Dir(rel), string(filepath.Separator))
	if filepath.Dir(rel) == "." {
		cur = nil
	}
	todo := strings.Split(target, "/")
	hops := 0
	exists := true
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return errors.New("which leads out of the build context")
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := append(cur[:len(cur):len(cur)], c)
		if !exists {
			cur = next
			continue
		}
		fi, err := os.Lstat(filepath.Join(append([]string{root}, next...)...))
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
			exists = false
			cur = next
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			hops++
			if hops > maxLinkHops {
				return errors.New("which goes through too many links")
			}
			t, err := os.Readlink(filepath.Join(append([]string{root}, next...)...))
			if err != nil {
				return err
			}
			if filepath.IsAbs(t) {
				return fmt.Errorf("which goes through %s, a link to an absolute path", path.Join(next...))
			}
			todo = append(strings.Split(t, "/"), todo...)
		default:
			cur = next
		}
	}
	return nil
}

// formatBytes is n in the largest binary unit that divides it, e.g. 1 MiB.
func formatBytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
