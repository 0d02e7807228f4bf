// Command podcell-build builds the podcell Caddy binary from xcaddy.json, the
// project's build manifest (no other tool reads that file):
//
//	{
//	  "caddy": "v2.11.9",
//	  "plugins": [{"module": "github.com/podcell/podcell", "replace": "."}],
//	  "build_tags": ["containers_image_openpgp"],
//	  "cgo": false
//	}
//
// A plugin has a module path and either a version or a replace path. With
// xcaddy on PATH it runs
//
//	CGO_ENABLED=0 XCADDY_GO_BUILD_FLAGS="-tags=containers_image_openpgp -trimpath" \
//	  xcaddy build v2.11.9 --output caddy \
//	  --with github.com/podcell/podcell@v0.0.0-00010101000000-000000000000=.
//
// and otherwise the equivalent plain build of cmd/caddy, which is possible
// while the only plugin is this module itself:
//
//	CGO_ENABLED=0 go build -tags containers_image_openpgp -trimpath -o caddy ./cmd/caddy
//
// Either way it first checks that the Caddy version go.mod requires is the
// manifest's, so the tests and the binary use the same Caddy.
//
// Usage: go run ./cmd/podcell-build [-manifest xcaddy.json] [-o caddy] [-with auto|xcaddy|go]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

const caddyModule = "github.com/caddyserver/caddy/v2"

// Manifest is the content of xcaddy.json.
type Manifest struct {
	Caddy     string   `json:"caddy"`
	Plugins   []Plugin `json:"plugins"`
	BuildTags []string `json:"build_tags"`
	CGO       bool     `json:"cgo"`
}

// Plugin is one --with argument of xcaddy.
type Plugin struct {
	Module  string `json:"module"`
	Version string `json:"version,omitempty"`
	Replace string `json:"replace,omitempty"`
}

// zeroVersion is the pseudo-version Go gives a replaced module that has no
// version of its own.
const zeroVersion = "v0.0.0-00010101000000-000000000000"

// With is the plugin as xcaddy's --with value: module@version or
// module@v0.0.0-00010101000000-000000000000=replace. Without a version,
// xcaddy runs `go get module`, which asks the module proxy for the latest
// version of a module that may be unpublished; a proxy that answers 403
// instead of 404 (as some mirrors do) then fails the build.
func (p Plugin) With() string {
	if p.Replace != "" {
		return p.Module + "@" + zeroVersion + "=" + p.Replace
	}
	return p.Module + "@" + p.Version
}

var (
	semverRE  = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	modpathRE = regexp.MustCompile(`^[a-z0-9.-]+(\.[a-z]+)(/[A-Za-z0-9._~-]+)+$`)
	tagRE     = regexp.MustCompile(`^[A-Za-z0-9_.]+$`)
)

// ParseManifest decodes and validates a manifest; unknown fields are errors
// so a typo does not silently drop a setting.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("not a valid manifest: %w", err)
	}
	if dec.More() {
		return m, errors.New("not a valid manifest: data after the JSON object")
	}
	if !semverRE.MatchString(m.Caddy) {
		return m, fmt.Errorf(`"caddy" is %q: want a Caddy release version such as "v2.11.9"`, m.Caddy)
	}
	if len(m.Plugins) == 0 {
		return m, errors.New(`"plugins" is empty: list at least {"module": "github.com/podcell/podcell", "replace": "."}`)
	}
	for i, p := range m.Plugins {
		if !modpathRE.MatchString(p.Module) {
			return m, fmt.Errorf("plugins[%d]: module %q is not a Go module path", i, p.Module)
		}
		if (p.Version != "") == (p.Replace != "") {
			return m, fmt.Errorf("plugins[%d] (%s): give a version or a replace path (one of them)", i, p.Module)
		}
		if p.Version != "" && !semverRE.MatchString(p.Version) {
			return m, fmt.Errorf("plugins[%d] (%s): version %q is not a semantic version", i, p.Module, p.Version)
		}
		if strings.ContainsAny(p.Replace, " \t\n=@") {
			return m, fmt.Errorf("plugins[%d] (%s): replace path %q contains a space, '=' or '@'", i, p.Module, p.Replace)
		}
	}
	for _, t := range m.BuildTags {
		if !tagRE.MatchString(t) {
			return m, fmt.Errorf("build tag %q is not a valid Go build tag", t)
		}
	}
	return m, nil
}

// goMod is the part of `go mod edit -json` this program reads.
type goMod struct {
	Module  struct{ Path string }
	Require []struct{ Path, Version string }
	Replace []struct{ Old struct{ Path string } }
}

func readGoMod() (goMod, error) {
	var gm goMod
	out, err := exec.Command("go", "mod", "edit", "-json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return gm, fmt.Errorf("go mod edit -json: %v\n%s", err, ee.Stderr)
		}
		return gm, fmt.Errorf("go mod edit -json: %v", err)
	}
	if err := json.Unmarshal(out, &gm); err != nil {
		return gm, fmt.Errorf("go mod edit -json: %v", err)
	}
	return gm, nil
}

// CheckCaddyVersion fails unless go.mod requires exactly the manifest's Caddy.
func CheckCaddyVersion(m Manifest, gm goMod) error {
	for _, r := range gm.Replace {
		if r.Old.Path == caddyModule {
			return fmt.Errorf("go.mod replaces %s; xcaddy would ignore that replace, remove it", caddyModule)
		}
	}
	for _, r := range gm.Require {
		if r.Path != caddyModule {
			continue
		}
		if r.Version != m.Caddy {
			return fmt.Errorf("xcaddy.json builds Caddy %s but go.mod requires %s %s: make them equal "+
				"(go get %s@%s, or edit \"caddy\" in xcaddy.json)", m.Caddy, caddyModule, r.Version, caddyModule, m.Caddy)
		}
		return nil
	}
	return fmt.Errorf("go.mod does not require %s; xcaddy.json builds Caddy %s (go get %s@%s)", caddyModule, m.Caddy, caddyModule, m.Caddy)
}

func main() {
	manifestPath := flag.String("manifest", "xcaddy.json", "build manifest")
	output := flag.String("o", "caddy", "output binary")
	with := flag.String("with", "auto", "builder: auto (xcaddy if on PATH, else go), xcaddy or go")
	flag.Parse()
	if err := run(*manifestPath, *output, *with); err != nil {
		fmt.Fprintf(os.Stderr, "podcell-build: %v\n", err)
		os.Exit(1)
	}
}

func run(manifestPath, output, with string) error {
	data, err := os.ReadFile(manifestPath)
	if err != nil {
		return err
	}
	m, err := ParseManifest(data)
	if err != nil {
		return fmt.Errorf("%s: %w", manifestPath, err)
	}
	gm, err := readGoMod()
	if err != nil {
		return err
	}
	if err := CheckCaddyVersion(m, gm); err != nil {
		return err
	}

	switch with {
	case "auto":
		with = "go"
		if _, err := exec.LookPath("xcaddy"); err == nil {
			with = "xcaddy"
		}
	case "xcaddy":
		if _, err := exec.LookPath("xcaddy"); err != nil {
			return errors.New("xcaddy is not on PATH: go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5")
		}
	case "go":
	default:
		return fmt.Errorf("-with %q: use auto, xcaddy or go", with)
	}

	cgo := "CGO_ENABLED=0"
	if m.CGO {
		cgo = "CGO_ENABLED=1"
	}
	var cmd *exec.Cmd
	var shown string
	if with == "xcaddy" {
		flags := "-trimpath"
		if len(m.BuildTags) > 0 {
			flags = "-tags=" + strings.Join(m.BuildTags, ",") + " " + flags
		}
		args := []string{"build", m.Caddy, "--output", output}
		for _, p := range m.Plugins {
			args = append(args, "--with", p.With())
		}
		cmd = exec.Command("xcaddy", args...)
		cmd.Env = append(os.Environ(), cgo, "XCADDY_GO_BUILD_FLAGS="+flags)
		shown = fmt.Sprintf("%s XCADDY_GO_BUILD_FLAGS=%q xcaddy %s", cgo, flags, strings.Join(args, " "))
	} else {
		for _, p := range m.Plugins {
			if p.Module != gm.Module.Path || p.Replace != "." {
				return fmt.Errorf("plugin %s is not this module with replace \".\" (%s): cmd/caddy cannot include it, "+
					"install xcaddy (go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5)", p.Module, gm.Module.Path)
			}
		}
		args := []string{"build"}
		if len(m.BuildTags) > 0 {
			args = append(args, "-tags", strings.Join(m.BuildTags, ","))
		}
		args = append(args, "-trimpath", "-o", output, "./cmd/caddy")
		cmd = exec.Command("go", args...)
		cmd.Env = append(os.Environ(), cgo)
		shown = fmt.Sprintf("%s go %s", cgo, strings.Join(args, " "))
	}
	fmt.Fprintf(os.Stderr, "podcell-build: %s\n", shown)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v", with, err)
	}
	return nil
}
