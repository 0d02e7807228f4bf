package builder

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// Detection reads the app's files the way the buildpacks users know
// (Heroku's, paketo's, Railpack) do, so that a repository deploys without
// hints: the runtime from the manifests present, the language versions the
// repository pins, and the Node.js package manager from its lock file.
// Every decision is a note the build log shows, with the file that led to
// it.

// pin is a language version a repository asks for.
type pin struct {
	lang string // "node" or "python"
	expr string // as written
	file string // where, e.g. "package.json engines.node"
	// rng is expr as a range: a node-semver range for Node.js, a PEP 440
	// specifier for Python.
	rng string
}

func (p pin) fits(rt Runtime) (bool, error) {
	switch p.lang {
	case "node":
		if rt.NodeLine == "" {
			return false, nil
		}
		return semverFits(p.rng, rt.NodeLine)
	case "python":
		if rt.PythonLine == "" {
			return false, nil
		}
		return pep440Fits(p.rng, rt.PythonLine)
	}
	return true, nil
}

// nodeAliases are the release names .nvmrc may hold, as nvm knows them.
var nodeAliases = map[string]string{
	"node": "", "stable": "", "latest": "", "current": "", "lts/*": "", "lts": "",
	"lts/argon": "4.x", "lts/boron": "6.x", "lts/carbon": "8.x", "lts/dubnium": "10.x",
	"lts/erbium": "12.x", "lts/fermium": "14.x", "lts/gallium": "16.x", "lts/hydrogen": "18.x",
	"lts/iron": "20.x", "lts/jod": "22.x",
}

var (
	requiresPython = regexp.MustCompile(`(?m)^\s*requires-python\s*=\s*["']([^"'\n]+)["']`)
	pipfilePython  = regexp.MustCompile(`(?m)^\s*python_(?:full_)?version\s*=\s*["']([^"'\n]+)["']`)
)

// readPins collects the version pins of the app's directory. A pin that
// cannot be read is an *InputError naming its file.
func readPins(r *repoDir, pkg *packageJSON) ([]pin, error) {
	var pins []pin
	if pkg != nil {
		if e, ok := pkg.Engines["node"].(string); ok && strings.TrimSpace(e) != "" {
			pins = append(pins, pin{lang: "node", expr: e, file: "package.json engines.node", rng: e})
		}
	}
	for _, f := range []string{".nvmrc", ".node-version"} {
		v := firstLine(r.read(f))
		if v == "" {
			continue
		}
		rng, ok := nodeAliases[strings.ToLower(v)]
		if !ok {
			rng = lineRange(v)
		}
		pins = append(pins, pin{lang: "node", expr: v, file: f, rng: rng})
	}
	if v := firstLine(r.read(".python-version")); v != "" {
		pins = append(pins, pin{lang: "python", expr: v, file: ".python-version", rng: "==" + minorLine(v)})
	}
	if v := firstLine(r.read("runtime.txt")); strings.HasPrefix(v, "python-") {
		pins = append(pins, pin{lang: "python", expr: v, file: "runtime.txt", rng: "==" + minorLine(strings.TrimPrefix(v, "python-"))})
	}
	if m := requiresPython.FindSubmatch(r.read("pyproject.toml")); m != nil {
		pins = append(pins, pin{lang: "python", expr: string(m[1]), file: "pyproject.toml requires-python", rng: string(m[1])})
	}
	if m := pipfilePython.FindSubmatch(r.read("Pipfile")); m != nil {
		pins = append(pins, pin{lang: "python", expr: string(m[1]), file: "Pipfile python_version", rng: "==" + minorLine(string(m[1]))})
	}
	if r.err != nil {
		return nil, r.err
	}
	for _, p := range pins {
		var err error
		if p.lang == "node" {
			_, err = semverFits(p.rng, "20")
		} else {
			_, err = pep440Fits(p.rng, "3.11")
		}
		if err != nil {
			return nil, &InputError{Field: "file", Value: p.file, Reason: fmt.Sprintf("holds %q, which is not a version podcell can read (%v): write a version like 20 or 3.11, or a range", p.expr, err)}
		}
	}
	return pins, nil
}

// lineRange turns an exact version from .nvmrc ("v20.11.1", "20") into the
// range of its major line: a runtime carries one release of a line.
func lineRange(v string) string {
	ver, n, err := parseVersion(v)
	if err != nil || n == 0 {
		return v
	}
	return fmt.Sprintf("%d.x", ver[0])
}

// minorLine is a Python version's minor line as a wildcard: "3.11.4" →
// "3.11.*", "3" → "3.*".
func minorLine(v string) string {
	ver, n, err := parseVersion(v)
	if err != nil {
		return v
	}
	if n <= 1 {
		return fmt.Sprintf("%d.*", ver[0])
	}
	return fmt.Sprintf("%d.%d.*", ver[0], ver[1])
}

func firstLine(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return ""
}

// runtimePreference is the order runtimes are tried in for an app that
// needs Node.js, Python or both: Debian before Alpine (glibc: prebuilt
// wheels and native modules work), a runtime with one language before the
// one with both.
var runtimePreference = map[string][]string{
	"node":        {"node20-debian", "node20-alpine", "python3.11-node"},
	"python":      {"python3.11-debian", "python3.11-alpine", "python3.11-node"},
	"python+node": {"python3.11-node"},
}

// detectRuntime picks the runtime of an app whose spec names none: the
// languages its files need, the first runtime of runtimePreference this
// builder can build (all, or those Options.BaseImages names) whose versions
// fit every pin. The notes say why.
func (o Options) detectRuntime(r *repoDir, pkg *packageJSON, pins []pin) (Runtime, []string, error) {
	var why []string
	node := r.have("package.json")
	if node {
		why = append(why, "package.json")
	}
	python := false
	for _, f := range []string{"requirements.txt", "pyproject.toml", "Pipfile", "setup.py"} {
		if r.have(f) {
			python = true
			why = append(why, f)
		}
	}
	if !node && !python {
		switch lang, prog := procfileLanguage(r); lang {
		case "node":
			node = true
			why = append(why, "the Procfile's web command ("+prog+")")
		case "python":
			python = true
			why = append(why, "the Procfile's web command ("+prog+")")
		}
	}
	if !node && !python {
		switch {
		case r.have("server.js"):
			node = true
			why = append(why, "server.js")
		case r.have("main.py"), r.have("app.py"):
			python = true
			why = append(why, "main.py or app.py")
		}
	}
	if r.err != nil {
		return Runtime{}, nil, r.err
	}
	where := "the repository root"
	if r.root != "" {
		where = "root_dir " + r.root
	}
	if !node && !python {
		return Runtime{}, nil, &InputError{Field: "runtime", Reason: fmt.Sprintf("could not be detected: %s has no package.json, requirements.txt, pyproject.toml, Pipfile, server.js, main.py or app.py, and no Procfile web command running node or python; set runtime to one of %s, or root_dir to the app's directory", where, strings.Join(o.runtimeNames(), ", "))}
	}
	need := "node"
	switch {
	case node && python:
		need = "python+node"
	case python:
		need = "python"
	}
	var tried []string
	for _, name := range runtimePreference[need] {
		rt, ok := LookupRuntime(name)
		if !ok || !o.canBuild(name) {
			continue
		}
		tried = append(tried, name)
		misfit := ""
		for _, p := range pins {
			if ok, _ := p.fits(rt); !ok {
				misfit = p.file
				break
			}
		}
		if misfit != "" {
			continue
		}
		notes := []string{fmt.Sprintf("runtime %s (%s) from %s", rt.Name, rt.versions(), strings.Join(why, ", "))}
		for _, p := range pins {
			notes = append(notes, fmt.Sprintf("%s %q fits %s", p.file, p.expr, rt.versions()))
		}
		return rt, notes, nil
	}
	if len(tried) == 0 {
		return Runtime{}, nil, &InputError{Field: "runtime", Reason: fmt.Sprintf("could not be detected: the app needs %s (from %s) and no runtime this server builds has it (it builds %s); set runtime", need, strings.Join(why, ", "), strings.Join(o.runtimeNames(), ", "))}
	}
	var asks, have []string
	for _, p := range pins {
		asks = append(asks, fmt.Sprintf("%s %q", p.file, p.expr))
	}
	for _, name := range tried {
		rt, _ := LookupRuntime(name)
		have = append(have, fmt.Sprintf("%s (%s)", name, rt.versions()))
	}
	return Runtime{}, nil, &InputError{Field: "runtime", Reason: fmt.Sprintf("could not be detected: %s asks for a version none of the runtimes has: %s; change the pin, or set runtime to use one anyway", strings.Join(asks, " and "), strings.Join(have, ", "))}
}

// procfileLanguage is the language the Procfile's web command runs, told by
// its program (after any NAME=value assignments and exec), and that
// program: a standard-library Python app with `web: python server.py` and
// no manifest names its language there only. "" when there is no such
// line or the program is neither's.
func procfileLanguage(r *repoDir) (lang, prog string) {
	if !r.have("Procfile") {
		return "", ""
	}
	for _, f := range strings.Fields(procfileWeb(r.read("Procfile"))) {
		if f == "exec" || strings.Contains(f, "=") {
			continue
		}
		prog = f[strings.LastIndex(f, "/")+1:]
		switch prog {
		case "node", "npm", "npx", "yarn", "pnpm":
			return "node", prog
		case "python", "python3", "gunicorn", "uvicorn", "hypercorn", "daphne", "waitress-serve", "flask", "fastapi":
			return "python", prog
		}
		if strings.HasPrefix(prog, "python3.") {
			return "python", prog
		}
		return "", ""
	}
	return "", ""
}

// checkPins tells, as warnings for the log, which pins the runtime a spec
// names does not fit: the user chose it, so the build goes on.
func checkPins(rt Runtime, pins []pin) []string {
	var warn []string
	for _, p := range pins {
		if (p.lang == "node" && rt.NodeLine == "") || (p.lang == "python" && rt.PythonLine == "") {
			continue
		}
		if ok, _ := p.fits(rt); !ok {
			warn = append(warn, fmt.Sprintf("%s asks for %q, but runtime %s has %s: the build goes on with it", p.file, p.expr, rt.Name, rt.versions()))
		}
	}
	return warn
}

// canBuild: with base images configured, only those runtimes are built
// (the others' public images may be out of reach); without, all are.
func (o Options) canBuild(name string) bool {
	if len(o.BaseImages) == 0 {
		return true
	}
	_, ok := o.BaseImages[name]
	return ok
}

func (o Options) runtimeNames() []string {
	var names []string
	for _, n := range Runtimes() {
		if o.canBuild(n) {
			names = append(names, n)
		}
	}
	return names
}

// packageManager is the Node.js package manager an app uses.
type packageManager struct {
	name  string // "npm", "yarn" or "pnpm"
	berry bool   // yarn 2 or later
	lock  string // its lock file, "" if the app has none
	why   string
}

// detectPackageManager reads package.json's packageManager field, else the
// lock file present (pnpm-lock.yaml, yarn.lock, package-lock.json).
func detectPackageManager(r *repoDir, pkg *packageJSON) packageManager {
	pm := packageManager{name: "npm", why: "no lock file of yarn or pnpm"}
	for _, l := range []struct{ file, name string }{
		{"pnpm-lock.yaml", "pnpm"}, {"yarn.lock", "yarn"}, {"package-lock.json", "npm"}, {"npm-shrinkwrap.json", "npm"},
	} {
		if r.have(l.file) {
			pm = packageManager{name: l.name, lock: l.file, why: l.file}
			break
		}
	}
	if pkg != nil && pkg.PackageManager != "" {
		name, ver, _ := strings.Cut(pkg.PackageManager, "@")
		switch name {
		case "npm", "yarn", "pnpm":
			lock := pm.lock
			if name != pm.name {
				lock = ""
			}
			pm = packageManager{name: name, lock: lock, why: "package.json packageManager " + pkg.PackageManager}
			if v, n, err := parseVersion(ver); name == "yarn" && err == nil && n > 0 && v[0] >= 2 {
				pm.berry = true
			}
		}
	}
	if pm.name == "yarn" && r.have(".yarnrc.yml") {
		pm.berry = true
	}
	return pm
}

// install is the package manager's command installing the lock file's
// versions (or resolving them, without a lock file). yarn and pnpm come
// through corepack, which Node.js 16.9+ ships; a runtime whose Node.js
// lacks it (Debian's) gets it from npm first.
func (pm packageManager) install(rt Runtime) []string {
	var cmds []string
	if pm.name != "npm" {
		if !rt.Corepack {
			cmds = append(cmds, "npm install -g corepack")
		}
		cmds = append(cmds, "corepack enable")
	}
	locked := pm.lock != ""
	switch {
	case pm.name == "npm" && locked:
		cmds = append(cmds, "npm ci")
	case pm.name == "npm":
		cmds = append(cmds, "npm install")
	case pm.name == "pnpm" && locked:
		cmds = append(cmds, "pnpm install --frozen-lockfile")
	case pm.name == "pnpm":
		cmds = append(cmds, "pnpm install")
	case pm.berry && locked:
		cmds = append(cmds, "yarn install --immutable")
	case pm.berry:
		cmds = append(cmds, "yarn install")
	case locked:
		cmds = append(cmds, "yarn install --frozen-lockfile")
	default:
		cmds = append(cmds, "yarn install")
	}
	return cmds
}

// manifests are the files the install needs, copied before the rest of
// the source so that its layer stays cached while they do not change.
func (pm packageManager) manifests(have func(string) bool) []string {
	list := []string{"package.json", pm.lock, ".npmrc"}
	switch pm.name {
	case "yarn":
		list = append(list, ".yarnrc", ".yarnrc.yml")
	case "pnpm":
		list = append(list, ".pnpmfile.cjs")
	}
	var files []string
	for _, f := range list {
		if f != "" && have(f) && !contains(files, f) {
			files = append(files, f)
		}
	}
	return files
}

// early: the install can run before the rest of the source is copied.
// yarn 2+ may run a yarn release committed in .yarn/ (yarnPath), and a
// pnpm workspace installs its members' manifests too.
func (pm packageManager) early(have func(string) bool) bool {
	return !pm.berry && !(pm.name == "pnpm" && have("pnpm-workspace.yaml"))
}

// runtimeFor is the runtime a build uses: the spec's (rt), with a warning
// for each version pin of the app it does not fit, or, when the spec names
// none, the detected one. The lines are for the build log.
func (o Options) runtimeFor(dir string, spec Spec, rt Runtime) (Runtime, []string, error) {
	r := &repoDir{dir: dir, root: spec.RootDir}
	pkg := readPackageJSON(r)
	pins, err := readPins(r, pkg)
	if err != nil {
		return rt, nil, err
	}
	if spec.Runtime != "" {
		var lines []string
		for _, w := range checkPins(rt, pins) {
			lines = append(lines, "Warning: "+w)
		}
		return rt, lines, nil
	}
	rt, notes, err := o.detectRuntime(r, pkg, pins)
	for i, n := range notes {
		notes[i] = "Detected " + n
	}
	return rt, notes, err
}
