# podcell: GNU make targets. See README.md.
#
#   make run    set up the host, build ./caddy and the demo image, run Caddyfile.example
#   make test   set up the host (rootful and rootless Podman) and the base images,
#               gofmt check, go vet and go test (needs root for set-up)
#   make base-images  build the local runtime base images from Debian packages
#               (root; see docs/runtimes.md)
#   make build  build ./caddy from xcaddy.json (xcaddy if on PATH, else go build ./cmd/caddy)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

# Go: the one on PATH, else /usr/local/go/bin/go (override with GO=/abs/path/go).
# Its directory goes first on PATH so scripts, tests (scaler/scalertest runs
# go build) and xcaddy use the same Go.
ifeq ($(origin GO),undefined)
GO := $(shell command -v go 2>/dev/null || { test -x /usr/local/go/bin/go && echo /usr/local/go/bin/go; })
endif
ifneq ($(GO),)
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)
endif
GOFMT = $(shell $(GO) env GOROOT)/bin/gofmt

# Every go command needs the tag (else the build wants gpgme) and no cgo.
GO_ENV := GOFLAGS=-tags=containers_image_openpgp CGO_ENABLED=0

.PHONY: setup setup-rootless base-images build demo-image test race run bench fmt fmt-check vet clean check-go

check-go:
	@test -n "$(GO)" || { echo "make: Go is not installed: install Go 1.26 (https://go.dev/dl/) into /usr/local/go" >&2; exit 1; }

# Installs Podman and runc, writes /etc/containers/containers.conf, starts the
# Podman API service, and makes the podcell user with subordinate ids, the
# build user (builds run rootless as it, see build_user in
# docs/configuration.md). Needs root; safe to run again.
setup:
	bash scripts/setup-host.sh
	bash scripts/setup-rootless.sh >/dev/null

# The same, printing the URI of the rootless Podman API service that
# scripts/setup-rootless.sh starts as the podcell user (for the rootless tests).
setup-rootless: setup
	bash scripts/setup-rootless.sh

# The builder's local runtime images (localhost/podcell-runtime:python3.11-debian,
# :node20-debian, :python3.11-node-debian) made with debootstrap from Debian's
# mirror, no registry needed. Kept when they exist; FORCE=1 rebuilds. Needs root.
base-images: setup
	bash scripts/build-base-images.sh

# BUILD_WITH: auto (xcaddy if on PATH, else go build ./cmd/caddy), xcaddy or go.
BUILD_WITH ?= auto
build: check-go
	$(GO) run ./cmd/podcell-build -manifest xcaddy.json -o caddy -with $(BUILD_WITH)

demo-image: check-go
	bash scripts/build-demo-image.sh

fmt-check: check-go
	@out="$$($(GOFMT) -l .)"; if [ -n "$$out" ]; then echo "gofmt: these files need 'make fmt':" >&2; echo "$$out" >&2; exit 1; fi

vet: check-go
	$(GO_ENV) $(GO) vet ./...

# The rootless tests use $PODCELL_ROOTLESS_URI when it is set, else the
# service scripts/setup-rootless.sh starts (a failed set-up fails make test).
# -p 1: packages take turns with the one Podman service; Podman 4.3 can
# deadlock under builds, starts and removals from several at once.
test: check-go setup base-images fmt-check vet
	uri="$${PODCELL_ROOTLESS_URI:-}"; [ -n "$$uri" ] || uri="$$(bash scripts/setup-rootless.sh)"; \
	CI=true PODCELL_ROOTLESS_URI="$$uri" $(GO_ENV) $(GO) test -p 1 -count=1 -timeout 40m ./...
	$(MAKE) race

# The scaler's concurrency under the race detector. It needs cgo, and with cgo
# the storage library wants the btrfs and devicemapper drivers left out.
RACE_ENV := GOFLAGS=-tags=containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper CGO_ENABLED=1
race: check-go
	$(RACE_ENV) $(GO) test -race -count=1 -timeout 20m ./scaler/...

run: check-go setup build demo-image
	./caddy run --config Caddyfile.example --adapter caddyfile

bench: check-go setup build demo-image
	bash benchmarks/run.sh

fmt: check-go
	$(GOFMT) -w .

clean:
	rm -f caddy
	rm -rf bin
