package builder

import (
	"fmt"
	"sort"
	"strings"
)

// Runtime is one of the execution environments a service can be built on:
// which languages its base image carries and which image that is by default.
type Runtime struct {
	Name   string
	Python bool // python3 and pip are available
	Node   bool // node and npm are available
	// PythonLine and NodeLine are the language versions the runtime carries
	// ("3.11", "20"), which version pins are checked against.
	PythonLine string
	NodeLine   string
	// Corepack: its Node.js ships corepack, which brings yarn and pnpm.
	Corepack bool
	// DefaultBase is the public image used unless Options.BaseImages names
	// another one for this runtime.
	DefaultBase string
	// aptNode: the default base image lacks Node.js; the generated
	// Containerfile installs Debian's nodejs and npm into it. Not done for a
	// configured base image, which is expected to carry both.
	aptNode bool
}

// The runtimes of the service doc: Python 3.11 and Node.js 20, on Alpine or
// Debian, and Python with Node.js for apps that bundle a frontend.
// python3.11-node adds Debian 12's Node.js to Python: that is Node.js 18,
// without corepack (scripts/build-base-images.sh measures the same).
var runtimes = map[string]Runtime{
	"python3.11-alpine": {Name: "python3.11-alpine", Python: true, PythonLine: "3.11", DefaultBase: "docker.io/library/python:3.11-alpine"},
	"python3.11-debian": {Name: "python3.11-debian", Python: true, PythonLine: "3.11", DefaultBase: "docker.io/library/python:3.11-slim-bookworm"},
	"node20-alpine":     {Name: "node20-alpine", Node: true, NodeLine: "20", Corepack: true, DefaultBase: "docker.io/library/node:20-alpine"},
	"node20-debian":     {Name: "node20-debian", Node: true, NodeLine: "20", Corepack: true, DefaultBase: "docker.io/library/node:20-bookworm-slim"},
	"python3.11-node":   {Name: "python3.11-node", Python: true, Node: true, PythonLine: "3.11", NodeLine: "18", DefaultBase: "docker.io/library/python:3.11-slim-bookworm", aptNode: true},
}

// versions names the runtime's languages, e.g. "Python 3.11, Node.js 18".
func (r Runtime) versions() string {
	var v []string
	if r.PythonLine != "" {
		v = append(v, "Python "+r.PythonLine)
	}
	if r.NodeLine != "" {
		v = append(v, "Node.js "+r.NodeLine)
	}
	return strings.Join(v, ", ")
}

// Runtimes lists the runtime names, sorted.
func Runtimes() []string {
	names := make([]string, 0, len(runtimes))
	for n := range runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LookupRuntime returns the runtime called name.
func LookupRuntime(name string) (Runtime, bool) {
	r, ok := runtimes[name]
	return r, ok
}

func unknownRuntime(name string) error {
	reason := "is required"
	if name != "" {
		reason = "is not a known runtime"
	}
	return &InputError{Field: "runtime", Value: name, Reason: fmt.Sprintf("%s: use one of %s", reason, strings.Join(Runtimes(), ", "))}
}

// baseImage is the image runtime r builds FROM under opts, and whether the
// Containerfile must add Node.js to it.
func (o Options) baseImage(r Runtime) (image string, aptNode bool) {
	if img := o.BaseImages[r.Name]; img != "" {
		return img, r.aptNode && img == r.DefaultBase
	}
	return r.DefaultBase, r.aptNode
}
