// Package caddymodule is podcell's Caddy glue, kept thin: the Caddy
// packages adapt Caddy's lifecycle, requests and admin endpoint to the
// Caddy-free control plane in package controller.
//
//   - app.go: the "podcell" app. It keeps one controller per data dir in a
//     caddy.UsagePool (the only state kept outside a config), so services,
//     builds and cron jobs survive reloads; Start hands the config's
//     services to the controller.
//   - handler.go: the "podcell" HTTP handler. A request goes to its
//     service's gateway (controller.Gateway.Try), which holds an instance
//     while Caddy's reverse_proxy proxies to it; a git service's webhook
//     path is its own route, to Controller.ServeWebhook.
//   - caddyfile.go: the global option and the directive.
//   - admin.go: the admin API under /podcell/, one route table of Go 1.22
//     patterns behind Caddy's admin router, calling the controller.
//   - command.go: the `caddy podcell` subcommands, clients of that API.
//   - placeholders.go: {env.*} and {file.*} in the config's values.
//
// The request path, the store, cron, observability and the dashboard live
// in the subpackages; podcell.go at the module root imports this package
// for xcaddy.
package caddymodule
