package builder

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// appDir writes files (name → content) into a fresh directory.
func appDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func gen(t *testing.T, files map[string]string, runtime string, spec Spec) *plan {
	t.Helper()
	rt, ok := LookupRuntime(runtime)
	if !ok {
		t.Fatalf("runtime %s", runtime)
	}
	if spec.Port == 0 {
		spec.Port = DefaultPort
	}
	base, aptNode := Options{}.baseImage(rt)
	p, err := generate(appDir(t, files), rt, base, aptNode, spec, buildSettings{user: defaultRuntimeUser})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(p.text, "\n"); got != len(p.purposes) {
		t.Fatalf("%d instructions but %d purposes:\n%s", got, len(p.purposes), p.text)
	}
	return p
}

// instr returns the Containerfile's instruction lines in order.
func instr(p *plan) []string { return strings.Split(strings.TrimSuffix(p.text, "\n"), "\n") }

// indexOf is the index of the first instruction starting with prefix, or -1.
func indexOf(p *plan, prefix string) int {
	for i, l := range instr(p) {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

func TestGeneratePython(t *testing.T) {
	p := gen(t, map[string]string{
		"requirements.txt": "flask==3.0.0\n# comment\ngunicorn\n",
		"app.py":           "",
	}, "python3.11-debian", Spec{Port: 9000})
	want := []string{
		"FROM docker.io/library/python:3.11-slim-bookworm",
		"ENV PYTHONUNBUFFERED=1 ",
		"WORKDIR /app",
		`COPY ["requirements.txt","./"]`,
		`RUN ["/bin/sh","-ec","python3 -m pip install -r requirements.txt"]`,
		"COPY . .",
		"ENV HOME=/tmp npm_config_cache=/tmp/.npm PORT=9000",
		"EXPOSE 9000",
		"USER 10001:10001",
		"ENTRYPOINT []",
		`CMD ["/bin/sh","-c","exec python3 app.py"]`,
	}
	got := instr(p)
	if len(got) != len(want) {
		t.Fatalf("Containerfile:\n%s", p.text)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("instruction %d = %q, want %q", i+1, got[i], want[i])
		}
	}
	if p.purposes[4] != PurposeInstall || p.purposes[5] != PurposeSource {
		t.Errorf("purposes = %v", p.purposes)
	}
	if p.start != "python3 app.py" {
		t.Errorf("start = %q", p.start)
	}
}

func TestGenerateDetection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		runtime string
		files   map[string]string
		spec    Spec
		early   []string // instructions that must come before COPY . .
		late    []string // instructions that must come after it
		absent  []string
		start   string
	}{
		{
			name: "pyproject", runtime: "python3.11-alpine",
			files: map[string]string{"pyproject.toml": "[project]\ndependencies=['x']\n", "main.py": ""},
			early: []string{`COPY ["pyproject.toml","./"]`, `RUN ["/bin/sh","-ec","python3 -c 'import subprocess, sys, tomllib;`},
			start: "python3 main.py",
		},
		{
			name: "requirements with local paths install after the source", runtime: "python3.11-debian",
			files: map[string]string{"requirements.txt": "-e .\n", "Procfile": "release: x\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n"},
			late:  []string{`RUN ["/bin/sh","-ec","python3 -m pip install -r requirements.txt"]`},
			start: "gunicorn app:app --bind 0.0.0.0:$PORT",
		},
		{
			name: "npm ci with a lock file, start script run without npm", runtime: "node20-alpine",
			files: map[string]string{"package.json": `{"scripts":{"start":"node index.js"}}`, "package-lock.json": "{}", ".npmrc": ""},
			early: []string{`COPY ["package.json","package-lock.json",".npmrc","./"]`, `RUN ["/bin/sh","-ec","npm ci"]`},
			late:  []string{"ENV HOME=/tmp npm_config_cache=/tmp/.npm PORT=8080 PATH=/app/node_modules/.bin:$PATH", `CMD ["/bin/sh","-c","exec node index.js"]`},
			start: "node index.js",
		},
		{
			name: "npm-shrinkwrap", runtime: "node20-debian",
			files: map[string]string{"package.json": `{}`, "npm-shrinkwrap.json": "{}", "server.js": ""},
			early: []string{`COPY ["package.json","npm-shrinkwrap.json","./"]`, `RUN ["/bin/sh","-ec","npm ci"]`},
			start: "node server.js",
		},
		{
			name: "npm install without a lock file, build script", runtime: "node20-debian",
			files: map[string]string{"package.json": `{"scripts":{"start":"x","build":"tsc"}}`},
			early: []string{`COPY ["package.json","./"]`, `RUN ["/bin/sh","-ec","npm install"]`},
			late:  []string{`RUN ["/bin/sh","-ec","npm run build"]`},
			start: "x",
		},
		{
			name: "yarn", runtime: "node20-debian",
			files: map[string]string{"package.json": `{"scripts":{"start":"x"}}`, "yarn.lock": ""},
			early: []string{`COPY ["package.json","yarn.lock","./"]`, `RUN ["/bin/sh","-ec","corepack enable\nyarn install --frozen-lockfile"]`},
			start: "x",
		},
		{
			name: "Pipfile with its lock through pipenv", runtime: "python3.11-debian",
			files: map[string]string{"Pipfile": "[packages]\n", "Pipfile.lock": "{}", "main.py": ""},
			early: []string{`COPY ["Pipfile","Pipfile.lock","./"]`, `RUN ["/bin/sh","-ec","python3 -m pip install pipenv && pipenv install --system --deploy"]`},
			start: "python3 main.py",
		},
		{
			name: "setup.py installs after the source", runtime: "python3.11-debian",
			files: map[string]string{"setup.py": "", "app.py": ""},
			late:  []string{`RUN ["/bin/sh","-ec","python3 -m pip install ."]`},
			start: "python3 app.py",
		},
		{
			name: "pnpm through corepack, its build script with pnpm", runtime: "node20-debian",
			files: map[string]string{"package.json": `{"scripts":{"start":"x","build":"tsc"}}`, "pnpm-lock.yaml": "", ".npmrc": ""},
			early: []string{`COPY ["package.json","pnpm-lock.yaml",".npmrc","./"]`, `RUN ["/bin/sh","-ec","corepack enable\npnpm install --frozen-lockfile"]`},
			late:  []string{`RUN ["/bin/sh","-ec","pnpm run build"]`},
			start: "x",
		},
		{
			name: "yarn 2+ from packageManager installs after the source", runtime: "node20-debian",
			files: map[string]string{"package.json": `{"packageManager":"yarn@4.1.0","scripts":{"start":"x"}}`, "yarn.lock": "", ".yarnrc.yml": ""},
			late:  []string{`RUN ["/bin/sh","-ec","corepack enable\nyarn install --immutable"]`},
			start: "x",
		},
		{
			name: "yarn on a runtime without corepack gets it from npm", runtime: "python3.11-node",
			files: map[string]string{"package.json": `{"scripts":{"start":"x"}}`, "yarn.lock": ""},
			early: []string{`RUN ["/bin/sh","-ec","npm install -g corepack\ncorepack enable\nyarn install --frozen-lockfile"]`},
			start: "x",
		},
		{
			name: "a build command adds to the detected install", runtime: "node20-debian",
			files: map[string]string{"package.json": `{"scripts":{"start":"next start","build":"next build"}}`, "package-lock.json": "{}"},
			spec:  Spec{Build: "npm run build"},
			early: []string{`COPY ["package.json","package-lock.json","./"]`, `RUN ["/bin/sh","-ec","npm ci"]`},
			late:  []string{`RUN ["/bin/sh","-ec","npm run build"]`},
			start: "next start",
		},
		{
			name: "install replaces the detected install", runtime: "node20-debian",
			files:  map[string]string{"package.json": `{"scripts":{"start":"x"}}`, "package-lock.json": "{}"},
			spec:   Spec{Install: "npm ci --omit=dev && node scripts/fetch.js"},
			early:  []string{`RUN ["/bin/sh","-ec","npm ci --omit=dev"]`},
			late:   []string{`RUN ["/bin/sh","-ec","node scripts/fetch.js"]`},
			absent: []string{`"npm ci"]`},
			start:  "x",
		},
		{
			name: "own install scripts install after the source", runtime: "node20-debian",
			files: map[string]string{"package.json": `{"scripts":{"start":"x","postinstall":"node setup.js"}}`, "package-lock.json": "{}"},
			late:  []string{`RUN ["/bin/sh","-ec","npm ci"]`},
			start: "x",
		},
		{
			name: "a prestart script needs npm start", runtime: "node20-debian",
			files: map[string]string{"package.json": `{"scripts":{"start":"node a.js","prestart":"node gen.js"}}`},
			late:  []string{`CMD ["/bin/sh","-c","exec npm start"]`},
			start: "npm start",
		},
		{
			name: "python and node, default base gets nodejs from apt", runtime: "python3.11-node",
			files: map[string]string{"requirements.txt": "x\n", "package.json": `{"scripts":{"build":"vite build"}}`, "package-lock.json": "{}", "app.py": ""},
			early: []string{`RUN ["/bin/sh","-ec","apt-get update\napt-get install -y --no-install-recommends nodejs npm`, `COPY ["requirements.txt","./"]`, `COPY ["package.json","package-lock.json","./"]`, `RUN ["/bin/sh","-ec","npm ci"]`},
			late:  []string{`RUN ["/bin/sh","-ec","npm run build"]`},
			start: "python3 app.py",
		},
		{
			name: "explicit commands: leading installs are hoisted", runtime: "python3.11-node",
			files: map[string]string{"requirements.txt": "x\n", "package.json": `{}`, "package-lock.json": "{}"},
			spec:  Spec{Build: "pip install -r requirements.txt && npm ci --omit=dev\n\nnpm run build\necho done", Start: "python3 -m app"},
			early: []string{`COPY ["requirements.txt","./"]`, `RUN ["/bin/sh","-ec","pip install -r requirements.txt"]`, `COPY ["package.json","package-lock.json","./"]`, `RUN ["/bin/sh","-ec","npm ci --omit=dev"]`},
			late:  []string{`RUN ["/bin/sh","-ec","npm run build\necho done"]`},
			start: "python3 -m app",
		},
		{
			name: "explicit commands: pip of named packages is hoisted without files", runtime: "python3.11-debian",
			files:  map[string]string{"requirements.txt": "x\n"},
			spec:   Spec{Build: "python3 -m pip install --upgrade pip gunicorn==22.0.0\npip install -e .", Start: "gunicorn app:app"},
			early:  []string{`RUN ["/bin/sh","-ec","python3 -m pip install --upgrade pip gunicorn==22.0.0"]`},
			late:   []string{`RUN ["/bin/sh","-ec","pip install -e ."]`},
			absent: []string{`COPY ["requirements.txt"`},
			start:  "gunicorn app:app",
		},
		{
			name: "explicit commands: shell syntax is not hoisted", runtime: "python3.11-debian",
			files:  map[string]string{"requirements.txt": "x\n"},
			spec:   Spec{Build: "pip install -r requirements.txt || true", Start: "x"},
			early:  []string{`RUN ["/bin/sh","-ec","python3 -m pip install -r requirements.txt"]`},
			late:   []string{`RUN ["/bin/sh","-ec","pip install -r requirements.txt || true"]`},
			absent: []string{"apt-get"},
			start:  "x",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := gen(t, tc.files, tc.runtime, tc.spec)
			src := indexOf(p, "COPY . .")
			last := -1
			for _, e := range tc.early {
				i := indexOf(p, e)
				if i < 0 || i > src || i < last {
					t.Errorf("%q is not before COPY . . (in order):\n%s", e, p.text)
				}
				last = i
			}
			for _, l := range tc.late {
				if i := indexOf(p, l); i < src {
					t.Errorf("%q is not after COPY . .:\n%s", l, p.text)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(p.text, a) {
					t.Errorf("%q should not be in:\n%s", a, p.text)
				}
			}
			if p.start != tc.start {
				t.Errorf("start = %q, want %q", p.start, tc.start)
			}
			for i, l := range instr(p) {
				if strings.HasPrefix(l, "RUN") && p.purposes[i] != PurposeInstall && p.purposes[i] != PurposeBuild && p.purposes[i] != PurposeNode {
					t.Errorf("RUN %d has purpose %q", i+1, p.purposes[i])
				}
			}
		})
	}
}

func TestGenerateBaseImage(t *testing.T) {
	rt, _ := LookupRuntime("python3.11-node")
	opts := Options{BaseImages: map[string]string{"python3.11-node": "localhost/podcell-runtime:python3.11-node-debian"}}
	base, aptNode := opts.baseImage(rt)
	if base != "localhost/podcell-runtime:python3.11-node-debian" || aptNode {
		t.Errorf("configured base: %s, apt node %v", base, aptNode)
	}
	base, aptNode = Options{}.baseImage(rt)
	if base != "docker.io/library/python:3.11-slim-bookworm" || !aptNode {
		t.Errorf("default base: %s, apt node %v", base, aptNode)
	}
	for _, name := range Runtimes() {
		r, _ := LookupRuntime(name)
		if b, apt := (Options{}).baseImage(r); b == "" || apt != (name == "python3.11-node") {
			t.Errorf("%s: base %q apt %v", name, b, apt)
		}
	}
}

func TestGenerateNoStart(t *testing.T) {
	rt, _ := LookupRuntime("python3.11-debian")
	_, err := generate(appDir(t, map[string]string{"requirements.txt": ""}), rt, "x", false, Spec{Port: 8080, Source: Source{RootDir: "api"}}, buildSettings{user: defaultRuntimeUser})
	var ie *InputError
	if !errors.As(err, &ie) || ie.Field != "start" || !strings.Contains(err.Error(), "root_dir api") {
		t.Fatalf("err = %v, want a start error naming the root dir", err)
	}
	t.Log(err)
	// A node start script does not count on a Python-only runtime.
	_, err = generate(appDir(t, map[string]string{"package.json": `{"scripts":{"start":"x"}}`}), rt, "x", false, Spec{Port: 8080}, buildSettings{user: defaultRuntimeUser})
	if !errors.As(err, &ie) || ie.Field != "start" {
		t.Fatalf("err = %v, want a start error", err)
	}
}

// TestGenerateLinks: a file detection consults must be a regular file; one
// it does not consult may be anything.
func TestGenerateLinks(t *testing.T) {
	rt, _ := LookupRuntime("python3.11-node")
	for _, tc := range []struct {
		name, link string
		spec       Spec
		refused    bool
	}{
		{name: "start file consulted", link: "main.py", refused: true},
		{name: "lock file consulted", link: "package-lock.json", refused: true},
		{name: "Procfile not consulted with a start command", link: "Procfile", spec: Spec{Start: "python3 main.py"}},
		{name: "requirements.txt not consulted with an install command", link: "requirements.txt", spec: Spec{Install: "make", Start: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := appDir(t, map[string]string{"main.py": "", "package.json": "{}", "real": "web: python3 main.py\n"})
			os.Remove(filepath.Join(dir, tc.link))
			if err := os.Symlink("real", filepath.Join(dir, tc.link)); err != nil {
				t.Fatal(err)
			}
			spec := tc.spec
			spec.Port = 8080
			_, err := generate(dir, rt, "x", false, spec, buildSettings{user: defaultRuntimeUser})
			var ie *InputError
			switch {
			case tc.refused && (!errors.As(err, &ie) || ie.Field != "file" || ie.Value != tc.link):
				t.Errorf("err = %v, want %s refused", err, tc.link)
			case !tc.refused && err != nil:
				t.Errorf("err = %v, want none", err)
			}
		})
	}
}

func TestMultiLineCommands(t *testing.T) {
	p := gen(t, map[string]string{}, "python3.11-debian", Spec{Build: "echo one\necho \"two\" && echo 'three'\n", Start: "echo a\nexec python3 -m http.server $PORT"})
	if !strings.Contains(p.text, `RUN ["/bin/sh","-ec","echo one\necho \"two\" && echo 'three'"]`) {
		t.Errorf("build RUN:\n%s", p.text)
	}
	if !strings.Contains(p.text, `CMD ["/bin/sh","-c","echo a\nexec python3 -m http.server $PORT"]`) {
		t.Errorf("CMD:\n%s", p.text)
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{Source: Source{URL: "https://github.com/owner/repo"}, Runtime: "node20-alpine"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	// No runtime: detected at build time.
	if err := (Spec{Source: ok.Source}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec  Spec
		field string
	}{
		{Spec{Source: ok.Source, Runtime: "ruby3"}, "runtime"},
		{Spec{Source: ok.Source, Install: "a\x00b"}, "install"},
		{Spec{Source: ok.Source, Runtime: "node20-alpine", Port: 70000}, "port"},
		{Spec{Source: ok.Source, Runtime: "node20-alpine", Start: "a\x00b"}, "start"},
		{Spec{Source: Source{URL: "https://github.com/o/r", RootDir: "../up"}, Runtime: "node20-alpine"}, "root_dir"},
		{Spec{Source: Source{URL: "https://github.com/o/r", Ref: "-x"}, Runtime: "node20-alpine"}, "ref"},
	} {
		err := tc.spec.Validate()
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != tc.field {
			t.Errorf("%+v: err = %v, want field %s", tc.spec, err, tc.field)
		}
	}
	for _, tag := range []string{"", "UPPER:x", "a:b:c", "localhost/x@sha256:" + strings.Repeat("a", 64)} {
		var ie *InputError
		if err := validateTag(tag); !errors.As(err, &ie) || ie.Field != "tag" {
			t.Errorf("tag %q: err = %v", tag, err)
		}
	}
	if err := validateTag("localhost/podcell-app:rev-1"); err != nil {
		t.Error(err)
	}
}

func TestLogSink(t *testing.T) {
	var got []string
	s := newLogSink(func(l string) { got = append(got, l) }, 3)
	s.Write([]byte("one\ntw"))
	if len(got) != 1 {
		t.Fatalf("a line is passed on when complete: %q", got)
	}
	s.Write([]byte("o\r\nCounting 10%\rCounting 50%\r"))
	s.Write([]byte("Counting 100%, done.\nfour\nlast"))
	s.flush()
	want := []string{"one", "two", "Counting 100%, done.", "four", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
	kept, dropped := s.snapshot()
	if strings.Join(kept, "|") != "Counting 100%, done.|four|last" || dropped != 2 {
		t.Errorf("kept %q, dropped %d", kept, dropped)
	}
	s.close()
	s.Write([]byte("after\n"))
	if len(got) != len(want) {
		t.Errorf("callback after close: %q", got)
	}
}

func TestStepTracker(t *testing.T) {
	tr := &stepTracker{purposes: []string{PurposeBase, PurposeWorkdir, PurposeBuild}}
	s := newLogSink(nil, 100)
	s.observe = tr.line
	s.Write([]byte("STEP 1/3: FROM x\nSTEP 2/3: WORKDIR /app\n--> Using cache 0123abcd\n--> 0123abcd\nSTEP 3/3: RUN [\"/bin/sh\",\"-ec\",\"exit 3\"]\nError: building at STEP \"RUN\": exit status 3\n"))
	if len(tr.steps) != 3 || tr.total != 3 {
		t.Fatalf("steps = %+v", tr.steps)
	}
	if tr.steps[0].Cached || !tr.steps[1].Cached || tr.steps[2].Cached {
		t.Errorf("cached: %+v", tr.steps)
	}
	if c := tr.current(); c.Number != 3 || c.Purpose != PurposeBuild || !strings.Contains(c.Instruction, "exit 3") {
		t.Errorf("current = %+v", c)
	}
}

func TestExecStart(t *testing.T) {
	for in, want := range map[string]string{
		"node server.js":                  "exec node server.js",
		"gunicorn -b 0.0.0.0:$PORT app:a": "exec gunicorn -b 0.0.0.0:$PORT app:a",
		"exec node server.js":             "exec node server.js",
		"cd web && node server.js":        "cd web && node server.js",
		"node a.js; node b.js":            "node a.js; node b.js",
		"NODE_ENV=production node s.js":   "NODE_ENV=production node s.js",
		"echo a\nnode s.js":               "echo a\nnode s.js",
		"if true; then x; fi":             "if true; then x; fi",
		"node s.js | tee /tmp/log":        "node s.js | tee /tmp/log",
	} {
		if got := execStart(in); got != want {
			t.Errorf("execStart(%q) = %q, want %q", in, got, want)
		}
	}
}
