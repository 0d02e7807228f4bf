package builder

import (
	"errors"
	"strings"
	"testing"
)

// localRuntimes are the runtimes make base-images provides (the tests' and
// make run's BaseImages): detection picks among these only.
var localRuntimes = Options{BaseImages: map[string]string{
	"python3.11-debian": "localhost/podcell-runtime:python3.11-debian",
	"node20-debian":     "localhost/podcell-runtime:node20-debian",
	"python3.11-node":   "localhost/podcell-runtime:python3.11-node-debian",
}}

func TestDetectRuntime(t *testing.T) {
	for _, tc := range []struct {
		name string
		// opts replaces localRuntimes when set; public: no base images at all.
		opts   *Options
		public bool
		files  map[string]string
		want   string
		// err: the detection fails; the error contains each of these.
		err []string
	}{
		{name: "package.json", files: map[string]string{"package.json": "{}"}, want: "node20-debian"},
		{name: "requirements.txt", files: map[string]string{"requirements.txt": ""}, want: "python3.11-debian"},
		{name: "pyproject.toml", files: map[string]string{"pyproject.toml": "[project]\nname='x'\n"}, want: "python3.11-debian"},
		{name: "Pipfile", files: map[string]string{"Pipfile": "[packages]\n"}, want: "python3.11-debian"},
		{name: "both languages", files: map[string]string{"package.json": "{}", "requirements.txt": ""}, want: "python3.11-node"},
		{name: "main.py alone", files: map[string]string{"main.py": ""}, want: "python3.11-debian"},
		{name: "server.js alone", files: map[string]string{"server.js": ""}, want: "node20-debian"},
		// A standard-library app whose only hint is its Procfile (found by
		// the apps suite: these failed with "could not be detected").
		{name: "Procfile python", files: map[string]string{"Procfile": "web: python server.py\n", "server.py": ""}, want: "python3.11-debian"},
		{name: "Procfile env and path", files: map[string]string{"Procfile": "release: node migrate.js\nweb: PYTHONOPTIMIZE=1 exec /usr/bin/python3.11 -m http.server $PORT\n"}, want: "python3.11-debian"},
		{name: "Procfile gunicorn", files: map[string]string{"Procfile": "web: gunicorn app:app\n"}, want: "python3.11-debian"},
		{name: "Procfile node", files: map[string]string{"Procfile": "web: node dist/index.js\n", "dist/index.js": ""}, want: "node20-debian"},
		{name: "Procfile npm beside app.py", files: map[string]string{"Procfile": "web: npm start\n", "app.py": ""}, want: "node20-debian"},
		{name: "manifest over Procfile", files: map[string]string{"Procfile": "web: node x.js\n", "requirements.txt": ""}, want: "python3.11-debian"},
		{
			name: "Procfile of another program", files: map[string]string{"Procfile": "web: ./bin/server\n"},
			err: []string{"could not be detected", "no Procfile web command running node or python"},
		},
		{name: "engines fits", files: map[string]string{"package.json": `{"engines":{"node":">=18"}}`}, want: "node20-debian"},
		{name: "engines 18 picks the runtime with Node.js 18", files: map[string]string{"package.json": `{"engines":{"node":"18.x"}}`}, want: "python3.11-node"},
		{name: "nvmrc lts/iron", files: map[string]string{"package.json": `{}`, ".nvmrc": "lts/iron\n"}, want: "node20-debian"},
		{name: "nvmrc exact", files: map[string]string{"package.json": `{}`, ".nvmrc": "v20.11.1\n"}, want: "node20-debian"},
		{name: "python-version", files: map[string]string{"requirements.txt": "", ".python-version": "3.11.4\n"}, want: "python3.11-debian"},
		{name: "public runtimes without base images", public: true, files: map[string]string{"package.json": "{}"}, want: "node20-debian"},
		{
			name: "engines no runtime has", files: map[string]string{"package.json": `{"engines":{"node":">=22"}}`},
			err: []string{`package.json engines.node ">=22"`, "node20-debian (Node.js 20)", "python3.11-node (Python 3.11, Node.js 18)"},
		},
		{
			name: "runtime.txt no runtime has", files: map[string]string{"requirements.txt": "", "runtime.txt": "python-3.12.1\n"},
			err: []string{`runtime.txt "python-3.12.1"`, "python3.11-debian (Python 3.11)"},
		},
		{
			name: "requires-python no runtime has", files: map[string]string{"pyproject.toml": "[project]\nrequires-python = \">=3.12\"\n"},
			err: []string{`pyproject.toml requires-python ">=3.12"`},
		},
		{
			name: "nothing to detect", files: map[string]string{"index.html": ""},
			err: []string{"could not be detected", "package.json", "set runtime to one of node20-debian, python3.11-debian, python3.11-node"},
		},
		{
			name: "a language no configured runtime has", opts: &Options{BaseImages: map[string]string{"python3.11-debian": "x"}}, files: map[string]string{"package.json": "{}"},
			err: []string{"needs node", "it builds python3.11-debian"},
		},
		{
			name: "a pin that is not a version", files: map[string]string{"package.json": `{}`, ".nvmrc": "my-favourite\n"},
			err: []string{".nvmrc", `"my-favourite"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := localRuntimes
			switch {
			case tc.public:
				opts = Options{}
			case tc.opts != nil:
				opts = *tc.opts
			}
			rt, notes, err := opts.runtimeFor(appDir(t, tc.files), Spec{}, Runtime{})
			if tc.err != nil {
				var ie *InputError
				if !errors.As(err, &ie) {
					t.Fatalf("err = %v, want an InputError", err)
				}
				for _, want := range tc.err {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("err = %v, want it to contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rt.Name != tc.want {
				t.Errorf("runtime = %s, want %s", rt.Name, tc.want)
			}
			if len(notes) == 0 || !strings.Contains(notes[0], "runtime "+tc.want) {
				t.Errorf("notes = %q, want the runtime and why", notes)
			}
		})
	}
}

// TestDetectPinWarning: a runtime the spec names is used even where a pin
// does not fit, with a warning in the log.
func TestDetectPinWarning(t *testing.T) {
	rt, _ := LookupRuntime("node20-debian")
	dir := appDir(t, map[string]string{"package.json": `{"engines":{"node":"^16"}}`})
	got, lines, err := localRuntimes.runtimeFor(dir, Spec{Runtime: "node20-debian"}, rt)
	if err != nil || got.Name != "node20-debian" {
		t.Fatalf("runtime %s, %v", got.Name, err)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `package.json engines.node asks for "^16", but runtime node20-debian has Node.js 20`) {
		t.Errorf("lines = %q", lines)
	}
}

func TestDetectPackageManager(t *testing.T) {
	for _, tc := range []struct {
		files map[string]string
		want  packageManager
	}{
		{map[string]string{"package.json": "{}"}, packageManager{name: "npm"}},
		{map[string]string{"package.json": "{}", "package-lock.json": "{}"}, packageManager{name: "npm", lock: "package-lock.json"}},
		{map[string]string{"package.json": "{}", "yarn.lock": ""}, packageManager{name: "yarn", lock: "yarn.lock"}},
		{map[string]string{"package.json": "{}", "yarn.lock": "", ".yarnrc.yml": ""}, packageManager{name: "yarn", lock: "yarn.lock", berry: true}},
		{map[string]string{"package.json": "{}", "pnpm-lock.yaml": "", "package-lock.json": "{}"}, packageManager{name: "pnpm", lock: "pnpm-lock.yaml"}},
		{map[string]string{"package.json": `{"packageManager":"pnpm@9.1.0"}`}, packageManager{name: "pnpm"}},
		{map[string]string{"package.json": `{"packageManager":"yarn@3.6.0+sha256.abc"}`, "yarn.lock": ""}, packageManager{name: "yarn", lock: "yarn.lock", berry: true}},
	} {
		r := &repoDir{dir: appDir(t, tc.files)}
		got := detectPackageManager(r, readPackageJSON(r))
		got.why = ""
		if got != tc.want {
			t.Errorf("%v: %+v, want %+v", tc.files, got, tc.want)
		}
	}
}
