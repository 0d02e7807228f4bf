#!/usr/bin/env bash
# Builds the demo service image (cmd/hello) with Podman, no registry needed:
# a static Go binary in a FROM scratch image that runs as nobody (65534).
# Idempotent and fast when nothing changed: the image carries the binary's
# hash as a label and is rebuilt only when the hash differs.
#
# Environment:
#   PODCELL_HELLO_IMAGE  image tag (default localhost/podcell-hello:latest)
set -euo pipefail

IMAGE="${PODCELL_HELLO_IMAGE:-localhost/podcell-hello:latest}"

say() { printf 'build-demo-image: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

cd "$(dirname "$0")/.."
if ! command -v go >/dev/null; then
  [ -x /usr/local/go/bin/go ] || die "Go is not installed: install Go 1.26 (https://go.dev/dl/) into /usr/local/go"
  PATH="/usr/local/go/bin:$PATH"
fi
command -v podman >/dev/null || die "podman is not installed: run 'make setup' (scripts/setup-host.sh) as root"

dir="$(mktemp -d "${TMPDIR:-/tmp}/podcell-hello.XXXXXX")"
trap 'rm -rf "$dir"' EXIT

# Same flags as scaler/scalertest, so the binary (and its hash) is reproducible.
CGO_ENABLED=0 GOFLAGS= go build -trimpath -ldflags='-s -w' -o "$dir/hello" ./cmd/hello
hash="$(sha256sum "$dir/hello" | cut -c1-16)"

have="$(podman image inspect --format '{{index .Labels "podcell.hello.hash"}}' "$IMAGE" 2>/dev/null || true)"
if [ "$have" = "$hash" ]; then
  say "$IMAGE is up to date (hello $hash)"
  exit 0
fi

cat > "$dir/Containerfile" <<'CONTAINERFILE'
FROM scratch
COPY hello /hello
USER 65534:65534
ENTRYPOINT ["/hello"]
CONTAINERFILE
say "building $IMAGE (hello $hash)"
podman build --quiet --label "podcell.hello.hash=$hash" --tag "$IMAGE" --file "$dir/Containerfile" "$dir" >/dev/null </dev/null
say "built $IMAGE"
