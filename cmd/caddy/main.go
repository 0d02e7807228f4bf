// Command caddy is Caddy with its standard modules and podcell's. It builds
// the same binary as xcaddy with the plugin in xcaddy.json:
//
//	CGO_ENABLED=0 go build -tags containers_image_openpgp -trimpath -o caddy ./cmd/caddy
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/podcell/podcell"
)

func main() {
	caddycmd.Main()
}
