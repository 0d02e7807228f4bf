package builder

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// containerfileName is the name the generated Containerfile gets in the
// build context. It is left out of the image.
const containerfileName = ".podcell.Containerfile"

// Step purposes, as BuildError.Purpose and Step.Purpose report them.
const (
	PurposeBase       = "base image"
	PurposeNode       = "install Node.js into the base image"
	PurposeEnv        = "environment"
	PurposeBuildEnv   = "build argument"
	PurposeWorkdir    = "working directory"
	PurposeManifests  = "copy dependency manifests"
	PurposeInstall    = "install dependencies"
	PurposeSource     = "copy source"
	PurposeBuild      = "build command"
	PurposeRuntimeEnv = "runtime environment"
	PurposeExpose     = "expose port"
	PurposeUser       = "run as non-root user"
	PurposeEntrypoint = "entrypoint"
	PurposeStart      = "start command"
	PurposeLabels     = "labels"
)

const (
	nodeEarlyHint      = "package.json has its own install scripts, which may need the source"
	requirementsHint   = "requirements.txt refers to local files, which need the source"
	defaultRuntimeUser = "10001:10001"
)

// plan is a generated Containerfile and what was decided on the way.
type plan struct {
	text string
	// purposes[i] says what instruction i+1 (build output "STEP i+1/n") does.
	purposes []string
	start    string
	// notes are human-readable lines on what was detected or decided.
	notes []string
}

// installGroup is one dependency installation: the manifest files it needs
// and its commands. An early group runs before the rest of the source is
// copied, so its layer is reused while those files stay the same.
type installGroup struct {
	kind  string // "pip", "npm", "yarn"
	files []string
	cmds  []string
	early bool
}

var (
	pythonManifests = []string{"requirements.txt", "pyproject.toml"}
	npmManifests    = []string{"package.json", "package-lock.json", "npm-shrinkwrap.json", ".npmrc"}
	yarnManifests   = []string{"package.json", "yarn.lock", ".yarnrc", ".yarnrc.yml", ".npmrc"}
	pnpmManifests   = []string{"package.json", "pnpm-lock.yaml", ".npmrc", ".pnpmfile.cjs"}
)

const pyprojectInstall = `python3 -c 'import subprocess, sys, tomllib; deps = tomllib.load(open("pyproject.toml", "rb")).get("project", {}).get("dependencies", []); print("pyproject.toml: %d dependencies" % len(deps)); deps and subprocess.check_call([sys.executable, "-m", "pip", "install", *deps])'`

// buildSettings are what a build gets beside the app's spec: the user the
// app runs as, and the builder's CA bundle and proxy for its steps.
type buildSettings struct {
	user  string
	ca    bool // the build has the caSecretID secret
	proxy Proxy
}

// generate writes the Containerfile for the app in dir, its directory in
// the checkout. The files it reads or looks for there must be regular files
// (see repoDir): a link or a special file in their place is an *InputError
// naming it.
func generate(dir string, rt Runtime, base string, aptNode bool, spec Spec, set buildSettings) (*plan, error) {
	p := &plan{}
	r := &repoDir{dir: dir, root: spec.RootDir}
	have := r.have
	pkg := readPackageJSON(r)

	var groups []installGroup
	build := strings.TrimSpace(spec.Build)
	if install := strings.TrimSpace(spec.Install); install != "" {
		var rest string
		groups, rest = hoistInstall(install, have, pkg)
		groups = withCorepack(groups, rt)
		if rest != "" {
			groups = append(groups, installGroup{kind: "install", cmds: []string{rest}})
		}
		p.notes = append(p.notes, "install command: "+oneLine(install)+" (set by install, instead of the detected one)")
	} else {
		var detectedBuild string
		groups, detectedBuild = detectInstall(r, rt, pkg, p)
		if build == "" {
			build = detectedBuild
		} else if hoisted, rest := hoistInstall(build, have, pkg); len(hoisted) > 0 {
			groups, build = withCorepack(hoisted, rt), rest
			for _, g := range groups {
				p.notes = append(p.notes, fmt.Sprintf("build command starts with %s: it replaces the detected install and runs before the source is copied (cached while %s stay the same)", strings.Join(g.cmds, " && "), filesOrNone(g.files)))
			}
		} else if len(groups) > 0 {
			p.notes = append(p.notes, "build command: "+oneLine(build)+" (runs after the detected install)")
		}
	}

	start := strings.TrimSpace(spec.Start)
	if start == "" {
		var how string
		start, how = detectStart(r, rt, pkg)
		if r.err != nil {
			return nil, r.err
		}
		if start == "" {
			where := "the repository root"
			if spec.RootDir != "" {
				where = "root_dir " + spec.RootDir
			}
			return nil, &InputError{Field: "start", Reason: "is required: no Procfile 'web:' line, package.json start script, server.js, main.py or app.py found in " + where}
		}
		p.notes = append(p.notes, fmt.Sprintf("start command: %s (from %s)", start, how))
	}
	p.start = start
	if r.err != nil {
		return nil, r.err
	}

	var b strings.Builder
	add := func(purpose, format string, args ...any) {
		fmt.Fprintf(&b, format+"\n", args...)
		p.purposes = append(p.purposes, purpose)
	}
	add(PurposeBase, "FROM %s", base)
	if aptNode {
		add(PurposeNode, "RUN %s", jsonArray("/bin/sh", "-ec", "apt-get update\napt-get install -y --no-install-recommends nodejs npm\nrm -rf /var/lib/apt/lists/*"))
	}
	// Build-time settings shared by every app on this runtime, so this layer
	// is cached across apps. HOME stays root's during the build: /tmp is a
	// tmpfs at run time and would hide whatever the build put there.
	add(PurposeEnv, "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false COREPACK_HOME=/usr/local/share/corepack COREPACK_ENABLE_DOWNLOAD_PROMPT=0")
	add(PurposeWorkdir, "WORKDIR /app")
	// Build arguments reach the RUN steps after them, not the image's
	// environment. Proxy settings first, then the spec's own.
	for _, kv := range set.proxy.args() {
		add(PurposeBuildEnv, "ARG %s=%s", kv[0], labelQuote(kv[1]))
	}
	for _, k := range sortedKeys(spec.BuildEnv) {
		add(PurposeBuildEnv, "ARG %s=%s", k, labelQuote(spec.BuildEnv[k]))
	}
	if len(spec.BuildEnv) > 0 {
		p.notes = append(p.notes, "build_env for the install and build steps: "+strings.Join(sortedKeys(spec.BuildEnv), ", "))
	}
	run := func(purpose, script string) {
		if set.ca {
			add(purpose, "RUN --mount=type=secret,id=%s,target=%s %s", caSecretID, caMountPath, shell(caPrelude+script))
			return
		}
		add(purpose, "RUN %s", shell(script))
	}
	for _, g := range groups {
		if !g.early {
			continue
		}
		if len(g.files) > 0 {
			add(PurposeManifests, "COPY %s", jsonArray(append(append([]string{}, g.files...), "./")...))
		}
		run(PurposeInstall, strings.Join(g.cmds, "\n"))
	}
	add(PurposeSource, "COPY . .")
	for _, g := range groups {
		if !g.early {
			run(PurposeInstall, strings.Join(g.cmds, "\n"))
		}
	}
	if strings.TrimSpace(build) != "" {
		run(PurposeBuild, build)
	}
	// The app runs as a user that owns nothing, on a read-only root with a
	// tmpfs on /tmp: HOME and npm's cache go there.
	path := ""
	if rt.Node {
		path = " PATH=/app/node_modules/.bin:$PATH"
	}
	if rt.Node {
		// yarn and pnpm, if the build enabled them, run from corepack's
		// cache in the image.
		path += " COREPACK_HOME=/usr/local/share/corepack COREPACK_ENABLE_DOWNLOAD_PROMPT=0 COREPACK_ENABLE_NETWORK=0"
	}
	add(PurposeRuntimeEnv, "ENV HOME=/tmp npm_config_cache=/tmp/.npm PORT=%d%s", spec.Port, path)
	add(PurposeExpose, "EXPOSE %d", spec.Port)
	add(PurposeUser, "USER %s", set.user)
	add(PurposeEntrypoint, "ENTRYPOINT []")
	add(PurposeStart, "CMD %s", jsonArray("/bin/sh", "-c", execStart(start)))
	p.text = b.String()
	return p, nil
}

// label appends one LABEL instruction setting the key/value pairs.
func (p *plan) label(pairs [][2]string) {
	var b strings.Builder
	b.WriteString("LABEL")
	for _, kv := range pairs {
		fmt.Fprintf(&b, " %s=%s", labelQuote(kv[0]), labelQuote(kv[1]))
	}
	p.text += b.String() + "\n"
	p.purposes = append(p.purposes, PurposeLabels)
}

// labelQuote is s as a double-quoted Containerfile word: no variable is
// expanded in it and no quote ends it early.
func labelQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "\n", " ", "\r", " ")
	return `"` + r.Replace(s) + `"`
}

// detectInstall picks the usual dependency installation for the files in
// dir when the user gave no build command.
func detectInstall(dir *repoDir, rt Runtime, pkg *packageJSON, p *plan) ([]installGroup, string) {
	have := dir.have
	var groups []installGroup
	build := ""
	if rt.Python {
		switch {
		case have("requirements.txt"):
			g := installGroup{kind: "pip", files: []string{"requirements.txt"}, cmds: []string{"python3 -m pip install -r requirements.txt"}, early: true}
			if !requirementsSelfContained(dir.read("requirements.txt")) {
				g.early = false
				p.notes = append(p.notes, "dependencies are installed after the source is copied: "+requirementsHint)
			}
			groups = append(groups, g)
			p.notes = append(p.notes, "requirements.txt: "+g.cmds[0])
		case have("pyproject.toml"):
			groups = append(groups, installGroup{kind: "pip", files: []string{"pyproject.toml"}, cmds: []string{pyprojectInstall}, early: true})
			p.notes = append(p.notes, "pyproject.toml: pip install of its [project] dependencies")
		case have("Pipfile"):
			// pipenv is not in the images: pip brings it, then it installs
			// the locked set into the system site-packages.
			cmd := "python3 -m pip install pipenv && pipenv install --system --skip-lock"
			files := []string{"Pipfile"}
			if have("Pipfile.lock") {
				cmd = "python3 -m pip install pipenv && pipenv install --system --deploy"
				files = append(files, "Pipfile.lock")
			}
			groups = append(groups, installGroup{kind: "pipenv", files: files, cmds: []string{cmd}, early: true})
			p.notes = append(p.notes, "Pipfile: "+cmd)
		case have("setup.py"):
			// setup.py is code of the package: it needs the source.
			groups = append(groups, installGroup{kind: "pip", cmds: []string{"python3 -m pip install ."}})
			p.notes = append(p.notes, "setup.py: python3 -m pip install . (after the source is copied)")
		}
	}
	if rt.Node && have("package.json") {
		pm := detectPackageManager(dir, pkg)
		g := installGroup{kind: pm.name, cmds: pm.install(rt), files: pm.manifests(have), early: pm.early(have)}
		if !g.early {
			p.notes = append(p.notes, "dependencies are installed after the source is copied: "+pm.name+" may need files of the repository beyond its manifests")
		}
		if g.early && pkg != nil && pkg.hasInstallScripts() {
			g.early = false
			p.notes = append(p.notes, "dependencies are installed after the source is copied: "+nodeEarlyHint)
		}
		groups = append(groups, g)
		p.notes = append(p.notes, fmt.Sprintf("package manager %s (from %s): %s", pm.name, pm.why, strings.Join(g.cmds, " && ")))
		if pkg != nil && pkg.Scripts["build"] != "" {
			build = pm.name + " run build"
			p.notes = append(p.notes, "package.json has a build script: "+build)
		}
	}
	return groups, build
}

func manifestsPresent(kind string, have func(string) bool) []string {
	list := npmManifests
	switch kind {
	case "yarn":
		list = yarnManifests
	case "pnpm":
		list = pnpmManifests
	case "pip":
		list = pythonManifests[:1]
	}
	var files []string
	for _, f := range list {
		if have(f) {
			files = append(files, f)
		}
	}
	return files
}

func filesOrNone(files []string) string {
	if len(files) == 0 {
		return "the command"
	}
	return strings.Join(files, ", ")
}

// hoistInstall moves the dependency installs a user's build command starts
// with (pip install -r requirements.txt, npm ci, ...) before the copy of the
// source, so they are cached like detected ones. The rest of the build
// command runs as written, after the copy.
func hoistInstall(script string, have func(string) bool, pkg *packageJSON) ([]installGroup, string) {
	var groups []installGroup
	lines := strings.Split(strings.ReplaceAll(script, "\r\n", "\n"), "\n")
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		parts := strings.Split(t, "&&")
		for j, part := range parts {
			g, ok := hoistable(strings.TrimSpace(part), have, pkg)
			if !ok {
				rest := strings.TrimSpace(strings.Join(parts[j:], "&&"))
				if i+1 < len(lines) {
					rest += "\n" + strings.Join(lines[i+1:], "\n")
				}
				return groups, rest
			}
			if n := len(groups); n > 0 && groups[n-1].kind == g.kind {
				groups[n-1].cmds = append(groups[n-1].cmds, g.cmds...)
				for _, f := range g.files {
					if !contains(groups[n-1].files, f) {
						groups[n-1].files = append(groups[n-1].files, f)
					}
				}
			} else {
				groups = append(groups, g)
			}
		}
	}
	return groups, ""
}

var (
	shellSyntax = regexp.MustCompile(`['"` + "`" + `$;|<>(){}\\&!*?#~]`)
	pipCommand  = regexp.MustCompile(`^(pip3?|python3?(\.\d+)? -m pip) install (.+)$`)
	pkgSpec     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._\-\[\],=]*$`)
	npmCommand  = regexp.MustCompile(`^(npm (ci|install|i)|yarn( install)?|pnpm (install|i))((?: -[-\w=.]+)*)$`)
)

// hoistable reports whether cmd is a dependency install that needs nothing
// but manifest files, and which files.
func hoistable(cmd string, have func(string) bool, pkg *packageJSON) (installGroup, bool) {
	if cmd == "" || shellSyntax.MatchString(cmd) {
		return installGroup{}, false
	}
	cmd = strings.Join(strings.Fields(cmd), " ")
	if m := pipCommand.FindStringSubmatch(cmd); m != nil {
		g := installGroup{kind: "pip", cmds: []string{cmd}, early: true}
		args := strings.Fields(m[3])
		for k := 0; k < len(args); k++ {
			a := args[k]
			var req string
			switch {
			case a == "-r" || a == "--requirement":
				if k+1 >= len(args) {
					return g, false
				}
				k++
				req = args[k]
			case strings.HasPrefix(a, "--requirement="):
				req = strings.TrimPrefix(a, "--requirement=")
			case strings.HasPrefix(a, "-r"):
				req = strings.TrimPrefix(a, "-r")
			case a == "-e" || strings.HasPrefix(a, "--editable") || a == "-c" || strings.HasPrefix(a, "--constraint") || strings.HasPrefix(a, "--src"):
				return g, false
			case strings.HasPrefix(a, "-"):
				continue
			case pkgSpec.MatchString(a):
				continue
			default:
				return g, false
			}
			if req != "requirements.txt" || !have(req) {
				return g, false
			}
			g.files = []string{"requirements.txt"}
		}
		return g, true
	}
	if m := npmCommand.FindStringSubmatch(cmd); m != nil {
		if !have("package.json") || (pkg != nil && pkg.hasInstallScripts()) {
			return installGroup{}, false
		}
		kind := "npm"
		switch {
		case strings.HasPrefix(cmd, "yarn"):
			kind = "yarn"
		case strings.HasPrefix(cmd, "pnpm"):
			kind = "pnpm"
		}
		return installGroup{kind: kind, files: manifestsPresent(kind, have), cmds: []string{cmd}, early: true}, true
	}
	return installGroup{}, false
}

// requirementsSelfContained reports whether a requirements file installs
// only from package indexes, without other files of the repository.
func requirementsSelfContained(data []byte) bool {
	if data == nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if i := strings.Index(l, " #"); i >= 0 {
			l = strings.TrimSpace(l[:i])
		}
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		for _, p := range []string{".", "/", "-e", "--editable", "-r", "--requirement", "-c", "--constraint"} {
			if strings.HasPrefix(l, p) {
				return false
			}
		}
		if strings.Contains(l, "file:") {
			return false
		}
	}
	return true
}

type packageJSON struct {
	Scripts        map[string]string `json:"scripts"`
	Main           string            `json:"main"`
	PackageManager string            `json:"packageManager"`
	// Engines' values are strings in a valid package.json; any is taken so
	// that a stray number does not hide the rest of the file.
	Engines map[string]any `json:"engines"`
}

// readPackageJSON parses the app's package.json, or returns nil if it has
// none or it is not valid JSON (npm then says why in the build log).
func readPackageJSON(dir *repoDir) *packageJSON {
	data := dir.read("package.json")
	if data == nil {
		return nil
	}
	var p packageJSON
	if json.Unmarshal(data, &p) != nil {
		return nil
	}
	return &p
}

// hasInstallScripts: npm runs these lifecycle scripts of the package itself
// on install, and they usually need the package's source.
func (p *packageJSON) hasInstallScripts() bool {
	for _, s := range []string{"preinstall", "install", "postinstall", "prepublish", "preprepare", "prepare", "postprepare"} {
		if p.Scripts[s] != "" {
			return true
		}
	}
	return false
}

// detectStart finds the command that starts the app, and where it came from.
func detectStart(dir *repoDir, rt Runtime, pkg *packageJSON) (cmd, from string) {
	have := dir.have
	if have("Procfile") {
		if web := procfileWeb(dir.read("Procfile")); web != "" {
			return web, "Procfile web:"
		}
	}
	python := func() (string, string) {
		for _, f := range []string{"main.py", "app.py"} {
			if have(f) {
				return "python3 " + f, f
			}
		}
		return "", ""
	}
	node := func() (string, string) {
		if pkg != nil && pkg.Scripts["start"] != "" {
			// npm itself needs seconds of CPU to start at the CPU share of a
			// small instance (5 s more than node alone at 256 MB): run the
			// script as npm would, with node_modules/.bin on PATH, unless npm
			// has pre/post scripts to run around it.
			if pkg.Scripts["prestart"] == "" && pkg.Scripts["poststart"] == "" {
				return pkg.Scripts["start"], "package.json start script, run without npm"
			}
			return "npm start", "package.json start script"
		}
		if have("server.js") {
			return "node server.js", "server.js"
		}
		return "", ""
	}
	order := []func() (string, string){}
	if rt.Python {
		order = append(order, python)
	}
	if rt.Node {
		order = append(order, node)
	}
	for _, f := range order {
		if c, w := f(); c != "" {
			return c, w
		}
	}
	return "", ""
}

var (
	compoundShell = regexp.MustCompile("[;&|()`<>\n{}]")
	shellKeywords = map[string]bool{
		"if": true, "for": true, "while": true, "until": true, "case": true, "exec": true, "cd": true,
		"export": true, "set": true, "unset": true, ".": true, "source": true, "eval": true, "!": true,
		"trap": true, "ulimit": true, "umask": true, "wait": true, "test": true, "[": true,
	}
)

// execStart prefixes a simple start command with exec, so the app replaces
// the shell (dash does not exec a -c command by itself) and gets the
// SIGTERM a stop sends; a compound command is left as it is.
func execStart(start string) string {
	first, _, _ := strings.Cut(start, " ")
	if compoundShell.MatchString(start) || shellKeywords[first] || strings.Contains(first, "=") {
		return start
	}
	return "exec " + start
}

// procfileWeb returns the command of the Procfile's web process.
func procfileWeb(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, cmd, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(name) == "web" {
			return strings.TrimSpace(cmd)
		}
	}
	return ""
}

// shell is a RUN instruction's exec form running script with sh -e: a
// multi-line script stays one instruction, and any failing line fails it.
func shell(script string) string {
	return jsonArray("/bin/sh", "-ec", strings.TrimSpace(script))
}

// jsonArray is the exec form of an instruction: a JSON array of strings,
// with newlines escaped so the instruction stays on one line.
func jsonArray(args ...string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(args)
	return strings.TrimSuffix(b.String(), "\n")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
