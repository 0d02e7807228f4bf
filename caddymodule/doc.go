// Package caddymodule is podcell's Caddy app and HTTP handler.
package caddymodule
