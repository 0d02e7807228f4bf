package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/podcell/podcell/caddymodule/controller"
)

// Secrets stay out of the config: an env value or a webhook secret written
// in the Caddyfile (or the JSON config) can be a placeholder, {env.NAME} or
// {file./path}, that podcell resolves when it needs the value: an env value
// each time an instance's container is created, a webhook secret when the
// config loads. GET /config/ and autosave.json hold the placeholder only.
//
// Caddy's own resolution of these placeholders fits poorly: it yields an
// empty string, silently, for an unset variable and (with a log line) for a
// missing file, so a typo would start an app with an empty secret or make a
// webhook verify against an empty key. podcell resolves them itself, using
// Caddy's placeholder syntax (and its \{ escape), and a missing source is
// an error that names it.
//
// Only values the host's admin wrote are resolved. Values set through the
// admin API (env PUTs, services it declares) are taken literally: anyone
// who can reach the API could otherwise copy any host file into an app
// with {file./etc/shadow}.

// maxPlaceholderFile bounds what a {file.*} placeholder reads: the most one
// env value may hold through the admin API too.
const maxPlaceholderFile = controller.MaxEnvValue

// hasPlaceholder reports whether v holds a placeholder podcell resolves.
// Other values, braces and all, pass through as they are.
func hasPlaceholder(v string) bool {
	return strings.Contains(v, "{env.") || strings.Contains(v, "{file.")
}

// expandPlaceholders resolves the {env.NAME} and {file./path} placeholders
// of a value the config holds. Other placeholders are left as written. A
// file's content loses one trailing newline, as in Caddy.
func expandPlaceholders(v string) (string, error) {
	if !hasPlaceholder(v) {
		return v, nil
	}
	// An empty replacer knows no placeholder: it only parses, and every
	// one found comes to the func below.
	return caddy.NewEmptyReplacer().ReplaceFunc(v, func(key string, _ any) (any, error) {
		switch {
		case strings.HasPrefix(key, "env."):
			name := strings.TrimPrefix(key, "env.")
			val, ok := os.LookupEnv(name)
			if !ok {
				return nil, fmt.Errorf("{%s}: env var %s is not set in podcell's environment: set it where Caddy starts (e.g. the systemd unit's Environment=)", key, name)
			}
			return val, nil
		case strings.HasPrefix(key, "file."):
			return readSecretFile(strings.TrimPrefix(key, "file."))
		}
		return "{" + key + "}", nil
	})
}

// readSecretFile reads a {file.*} placeholder's file.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("{file.%s}: the file does not exist: create it or fix the path (an absolute one: Caddy's working directory may differ)", path)
	}
	if err != nil {
		return "", fmt.Errorf("{file.%s}: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPlaceholderFile+1))
	if err != nil {
		return "", fmt.Errorf("{file.%s}: %w", path, err)
	}
	if len(b) > maxPlaceholderFile {
		return "", fmt.Errorf("{file.%s}: the file is larger than %d bytes, the most an env value may hold", path, maxPlaceholderFile)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if bytes.IndexByte(b, 0) >= 0 {
		return "", fmt.Errorf("{file.%s}: the file contains a NUL byte, which an environment cannot hold", path)
	}
	return string(b), nil
}

// declaration is a service the config declares, ready for the
// controller: its env values with placeholders are checked now (a missing
// source fails the config at load) and named in ExpandEnv, for the scaler
// to resolve at each container create; the webhook secret is resolved
// once, now, into WebhookKey.
func declaration(name string, spec controller.ServiceSpec) (controller.Declared, error) {
	d := controller.Declared{Name: name, Spec: spec}
	for k, v := range spec.Env {
		if !hasPlaceholder(v) {
			continue
		}
		if _, err := expandPlaceholders(v); err != nil {
			return d, fmt.Errorf("env %s: %w", k, err)
		}
		d.ExpandEnv = append(d.ExpandEnv, k)
	}
	slices.Sort(d.ExpandEnv) // a stable order: declarations are compared whole
	git := spec.Git
	if git == nil || git.WebhookPath == "" {
		return d, nil
	}
	secret, err := expandPlaceholders(git.WebhookSecret)
	if err != nil {
		return d, fmt.Errorf("webhook secret: %w", err)
	}
	if secret == "" {
		return d, fmt.Errorf("webhook secret %q resolves to an empty string: set a secret (openssl rand -hex 32)", git.WebhookSecret)
	}
	d.WebhookKey = secret
	return d, nil
}
