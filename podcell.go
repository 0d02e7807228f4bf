// Package podcell is a Caddy build that runs services as Podman containers
// scaling from zero. Importing it registers podcell's Caddy modules; it holds
// no code of its own.
//
// It exists for xcaddy, which imports a plugin's module root as a package:
//
//	xcaddy build v2.11.9 --with github.com/podcell/podcell=.
//
// cmd/caddy builds the same binary with plain go build.
package podcell

import (
	_ "github.com/podcell/podcell/caddymodule"
)
