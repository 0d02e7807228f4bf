package builder

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGenerateBuildSettings: build_env and the proxy are build arguments
// before the install; the CA bundle is bound into the install and build
// steps only, and no step copies it.
func TestGenerateBuildSettings(t *testing.T) {
	rt, _ := LookupRuntime("node20-debian")
	dir := appDir(t, map[string]string{"package.json": `{"scripts":{"start":"x","build":"tsc"}}`, "package-lock.json": "{}"})
	spec := Spec{Port: 8080, BuildEnv: map[string]string{"NODE_OPTIONS": "--max-old-space-size=1536", "Q": `a "quoted" $HOME`}}
	set := buildSettings{user: defaultRuntimeUser, ca: true, proxy: Proxy{HTTPS: "http://proxy:3128", NoProxy: "localhost"}}
	p, err := generate(dir, rt, "x", false, spec, set)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ARG https_proxy="http://proxy:3128"`, `ARG HTTPS_PROXY="http://proxy:3128"`, `ARG no_proxy="localhost"`,
		`ARG NODE_OPTIONS="--max-old-space-size=1536"`, `ARG Q="a \"quoted\" \$HOME"`,
	} {
		if i := indexOf(p, want); i < 0 || i > indexOf(p, "COPY [") {
			t.Errorf("%q is not before the install:\n%s", want, p.text)
		}
	}
	mount := "RUN --mount=type=secret,id=" + caSecretID + ",target=" + caMountPath + " "
	var runs int
	for _, l := range instr(p) {
		if strings.HasPrefix(l, "RUN") {
			runs++
			if !strings.HasPrefix(l, mount) || !strings.Contains(l, "NODE_EXTRA_CA_CERTS") {
				t.Errorf("a step without the CA: %s", l)
			}
		}
	}
	if runs != 2 {
		t.Errorf("%d RUN steps, want the install and the build:\n%s", runs, p.text)
	}
	if !strings.Contains(strings.Join(p.notes, "\n"), "build_env for the install and build steps: NODE_OPTIONS, Q") {
		t.Errorf("notes: %q", p.notes)
	}
	if strings.Contains(strings.Join(p.notes, "\n"), "1536") {
		t.Errorf("a build_env value is in the notes: %q", p.notes)
	}
	if i := indexOf(p, "ENV HOME=/tmp"); strings.Contains(instr(p)[i], "NODE_OPTIONS") {
		t.Errorf("build_env in the runtime environment: %s", instr(p)[i])
	}
}

func TestCheckBuildEnv(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"NODE_OPTIONS": "x", "_A1": ""}, ""},
		{map[string]string{"1A": "x"}, "not a variable name"},
		{map[string]string{"A-B": "x"}, "not a variable name"},
		{map[string]string{"A": "x\ny"}, "line break"},
		{map[string]string{"A": strings.Repeat("x", 70000)}, "too large"},
	} {
		err := Spec{Source: Source{URL: "https://example.com/a.git"}, BuildEnv: tc.env}.Validate()
		var ie *InputError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.want != "" && (!errors.As(err, &ie) || ie.Field != "build_env" || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%.40v: err = %v, want build_env %s", tc.env, err, tc.want)
		}
	}
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	cert := testCertPEM(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	one := write("certs/a.crt", cert)
	write("certs/b.pem", cert)
	write("certs/README", []byte("not read"))
	if got, err := loadCA(one); err != nil || string(got) != string(cert) {
		t.Errorf("file: %v", err)
	}
	if got, err := loadCA(filepath.Join(dir, "certs")); err != nil || strings.Count(string(got), "BEGIN CERTIFICATE") != 2 {
		t.Errorf("directory: %d certificates, %v", strings.Count(string(got), "BEGIN CERTIFICATE"), err)
	}
	key := write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")}))
	for path, want := range map[string]string{
		key:                           "holds a PRIVATE KEY block",
		write("empty.crt", []byte{}):  "holds no PEM certificate",
		filepath.Join(dir, "missing"): "no such file",
		write("none/x.txt", []byte{}): "has no .crt or .pem file",
		write("bad.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")): "does not parse",
	} {
		if path == filepath.Join(dir, "none/x.txt") {
			path = filepath.Dir(path)
		}
		if _, err := loadCA(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", path, err, want)
		}
	}
	if _, err := New(nil, Options{BuildCA: key}); err == nil || !strings.Contains(err.Error(), "build_ca") {
		t.Errorf("New with a key as CA: %v", err)
	}
}

// testCertPEM is a self-signed CA certificate.
func testCertPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podcell test CA"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestBuildErrorWithoutCA: a failed step's reason names the user's command
// as it would without build_ca, not the CA plumbing around it (found by the
// apps suite: a failed `npm run build` read as 40 lines of it).
func TestBuildErrorWithoutCA(t *testing.T) {
	rt, _ := LookupRuntime("node20-debian")
	dir := appDir(t, map[string]string{"package.json": `{"scripts":{"start":"x","build":"node build.js"}}`})
	reason := func(ca bool) string {
		p, err := generate(dir, rt, "x", false, Spec{Port: 8080}, buildSettings{user: defaultRuntimeUser, ca: ca})
		if err != nil {
			t.Fatal(err)
		}
		n, run := 0, ""
		for i, l := range instr(p) {
			if strings.HasPrefix(l, "RUN") && strings.Contains(l, "npm run build") {
				n, run = i+1, l
			}
		}
		// As podman says it: the instruction, then its shell words unquoted.
		words := strings.TrimPrefix(run, "RUN ")
		mount := ""
		if ca {
			mount, words, _ = strings.Cut(words, " ")
			mount += " "
		}
		var args []string
		if err := json.Unmarshal([]byte(words), &args); err != nil {
			t.Fatalf("%s: %v", run, err)
		}
		step := fmt.Sprintf("STEP %d/%d: %s", n, len(p.purposes), run)
		be := &BuildError{
			Step: step, Purpose: PurposeBuild,
			Err: fmt.Errorf("building at STEP \"RUN %s%s\": while running runtime: exit status 1", mount, strings.Join(args, " ")),
			// The log has podman's error over several lines, as it quotes
			// the step's script.
			Last: append([]string{step, "", "> node build.js", "build.js: error TS2322"},
				strings.Split("Error: building at STEP \"RUN "+mount+strings.Join(args, " ")+"\": exit status 1", "\n")...),
		}
		return be.Error()
	}
	with, without := reason(true), reason(false)
	if with != without {
		t.Errorf("with build_ca the reason reads:\n%s\nwant it as without:\n%s", with, without)
	}
	for _, noise := range []string{"NODE_EXTRA_CA_CERTS", caSecretID, caMountPath, "podcell_ca"} {
		if strings.Contains(with, noise) {
			t.Errorf("the reason has %q:\n%s", noise, with)
		}
	}
	if !strings.Contains(with, `RUN ["/bin/sh","-ec","npm run build"] (build command)`) || !strings.Contains(with, "build.js: error TS2322") {
		t.Errorf("the reason lacks the step or the script's error:\n%s", with)
	}
}
