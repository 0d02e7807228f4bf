package builder

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/podcell/podcell/scaler"
)

// What a build's steps get besides the repository: build arguments
// (Spec.BuildEnv, the builder's proxy) and the builder's CA bundle. Behind
// a proxy that inspects TLS (corporate networks, and some CI machines)
// npm, pip and corepack fail with SELF_SIGNED_CERT_IN_CHAIN unless they
// trust its CA; the base images trust only the public ones.

// maxBuildEnvBytes bounds a spec's build_env, names and values together.
const maxBuildEnvBytes = 64 << 10

// checkBuildEnv checks a spec's build_env: names a shell can export, values
// on one line (a build argument is one Containerfile line).
func checkBuildEnv(env map[string]string) error {
	total := 0
	for _, k := range sortedKeys(env) {
		v := env[k]
		// What a shell can export: the rule of a service's env names.
		if !scaler.ValidEnvName(k) {
			return &InputError{Field: "build_env", Value: k, Reason: "is not a variable name: use letters, digits and _ (not first), at most 128"}
		}
		if strings.ContainsAny(v, "\x00\r\n") {
			return &InputError{Field: "build_env", Value: k, Reason: "has a NUL byte or a line break in its value: a build argument is one line"}
		}
		total += len(k) + len(v)
	}
	if total > maxBuildEnvBytes {
		return &InputError{Field: "build_env", Reason: fmt.Sprintf("is too large (%d bytes of names and values, at most %d)", total, maxBuildEnvBytes)}
	}
	return nil
}

// Proxy is the HTTP proxy a build's steps use, as build arguments in both
// spellings tools read (curl and pip read the lower case, others the upper).
// Credentials in a URL end up in the image's history like every build
// argument.
type Proxy struct {
	HTTP    string `json:"http,omitempty"`
	HTTPS   string `json:"https,omitempty"`
	NoProxy string `json:"no_proxy,omitempty"`
}

func (p Proxy) args() [][2]string {
	var out [][2]string
	for _, kv := range [][2]string{{"http_proxy", p.HTTP}, {"https_proxy", p.HTTPS}, {"no_proxy", p.NoProxy}} {
		if kv[1] != "" {
			out = append(out, kv, [2]string{strings.ToUpper(kv[0]), kv[1]})
		}
	}
	return out
}

// Validate checks each setting is one line.
func (p Proxy) Validate() error {
	for _, f := range []struct{ name, v string }{{"http", p.HTTP}, {"https", p.HTTPS}, {"no_proxy", p.NoProxy}} {
		if strings.ContainsAny(f.v, "\x00\r\n") {
			return &InputError{Field: "build_proxy " + f.name, Reason: "has a line break: give one URL"}
		}
	}
	return nil
}

// caSecretID is the build secret the CA bundle is handed to the install and
// build steps as (RUN --mount=type=secret): a secret is mounted into the
// steps that ask for it and never lands in a layer, and Podman ships it to
// the build service beside the context rather than in it (a context file
// excluded from COPY would not reach a remote build at all). caMountPath is
// where those steps see it.
const (
	caSecretID  = "podcell-build-ca"
	caMountPath = "/run/podcell-build-ca.pem"
)

// caPrelude makes a step trust the extra CA on top of the image's own:
// Node.js adds NODE_EXTRA_CA_CERTS to its built-in list, while pip, requests,
// curl and git take one bundle that replaces theirs, so they get the image's
// bundle with the extra CA appended (in /tmp, removed when the step ends).
const caPrelude = `export NODE_EXTRA_CA_CERTS=` + caMountPath + `
podcell_ca=$(mktemp)
trap 'rm -f "$podcell_ca"' EXIT
cat /etc/ssl/certs/ca-certificates.crt ` + caMountPath + ` >"$podcell_ca" 2>/dev/null || cat ` + caMountPath + ` >"$podcell_ca"
export SSL_CERT_FILE="$podcell_ca" REQUESTS_CA_BUNDLE="$podcell_ca" PIP_CERT="$podcell_ca" CURL_CA_BUNDLE="$podcell_ca" GIT_SSL_CAINFO="$podcell_ca"
`

// loadCA reads the CA bundle at path: a PEM file, or a directory whose
// *.crt and *.pem files are read (like /usr/local/share/ca-certificates).
// Each must hold certificates only; at most 1 MiB in all.
func loadCA(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if fi.IsDir() {
		files = nil
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if ext := filepath.Ext(p); !d.IsDir() && (ext == ".crt" || ext == ".pem") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s has no .crt or .pem file", path)
		}
	}
	var out []byte
	for _, f := range files {
		data, err := readFileMax(f, maxRepoFileBytes)
		if err != nil {
			return nil, err
		}
		if err := checkPEMCerts(data); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, data...)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		if len(out) > maxRepoFileBytes {
			return nil, fmt.Errorf("the CA bundle is larger than %s", formatBytes(maxRepoFileBytes))
		}
	}
	return out, nil
}

// checkPEMCerts: data is PEM holding at least one certificate and nothing
// else (a private key has no place in a CA bundle).
func checkPEMCerts(data []byte) error {
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("holds a %s block: give certificates only", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("holds a certificate that does not parse: %w", err)
		}
		n++
	}
	if n == 0 {
		return errors.New("holds no PEM certificate")
	}
	return nil
}

// readFileMax reads a file of the server's configuration (links followed:
// it is not the repository's), refusing one over max bytes.
func readFileMax(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %s", path, formatBytes(max))
	}
	return data, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// oneLine shortens a command for a log note.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// withCorepack puts corepack in front of the yarn and pnpm installs of a
// user's command: the images carry npm only.
func withCorepack(groups []installGroup, rt Runtime) []installGroup {
	for i, g := range groups {
		if g.kind == "yarn" || g.kind == "pnpm" {
			pm := packageManager{name: g.kind}
			pre := pm.install(rt)
			groups[i].cmds = append(pre[:len(pre)-1:len(pre)-1], g.cmds...)
		}
	}
	return groups
}
