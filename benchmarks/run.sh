#!/usr/bin/env bash
# Runs podcell's benchmarks from the repository root and writes each one's
# report to benchmarks/results/<name>-<date>.md (and .json where the benchmark
# writes JSON). Needs the Podman API (run scripts/setup-host.sh as root first,
# or `make bench`, which does).
#
# Environment:
#   N        samples per figure (default 25): coldstart's samples, gateway's cold-start samples
#   BUILD_N  rounds of the build benchmark (default 3; each round is 4 image builds per app)
#   DISK_DEPLOYS  deploys per keep_images value of the disk benchmark (default 50)
#   SCALE_N  services at the scale benchmark's last step (default 1000)
#   BW_N     rounds of the bandwidth benchmark (default 5; each moves about 8 s of traffic per shaped target and direction)
#   RT_N     samples of each figure of the runtimes benchmark (default 7)
#   ONLY     run only the steps whose name is listed (space-separated), e.g. ONLY=coldstart,
#            ONLY=gateway, ONLY=build, ONLY=disk, ONLY=scale, ONLY=bandwidth or ONLY=runtimes;
#            the steps are coldstart, gateway, build, disk, scale, bandwidth and runtimes
#   GO       the go command (default: go on PATH, else /usr/local/go/bin/go)
#   PODCELL_PODMAN_URI  Podman API address (default unix:///run/podman/podman.sock)
set -euo pipefail

cd "$(dirname "$0")/.."
N="${N:-25}"
BUILD_N="${BUILD_N:-3}"
DISK_DEPLOYS="${DISK_DEPLOYS:-50}"
SCALE_N="${SCALE_N:-1000}"
BW_N="${BW_N:-5}"
RT_N="${RT_N:-7}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$GO" ] || command -v "$GO" >/dev/null || { echo "run.sh: Go not found; install Go 1.26 or set GO=" >&2; exit 1; }
export PATH="$(dirname "$GO"):$PATH"   # scalertest builds the hello image with `go build`
export GOFLAGS=-tags=containers_image_openpgp CGO_ENABLED=0

DATE="$(date -u +%Y%m%d-%H%M%S)"
OUT=benchmarks/results
mkdir -p "$OUT"

# Each step: a name and the command that prints its markdown report on stdout.
# In the command, @JSON@ stands for the step's JSON result file.
STEPS=(
  "coldstart|$GO run ./benchmarks/coldstart -n $N -json @JSON@"
  "gateway|$GO run ./benchmarks/gateway -n $N -json @JSON@"
  "build|$GO run ./benchmarks/build -n $BUILD_N -json @JSON@"
  "disk|$GO run ./benchmarks/disk -deploys $DISK_DEPLOYS -json @JSON@"
  "scale|$GO run ./benchmarks/scale -n $SCALE_N -json @JSON@"
  "bandwidth|$GO run ./benchmarks/bandwidth -n $BW_N -json @JSON@"
  "runtimes|$GO run ./benchmarks/runtimes -n $RT_N -json @JSON@"
)

failed=0
for step in "${STEPS[@]}"; do
  name="${step%%|*}"
  cmd="${step#*|}"
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then
    continue
  fi
  md="$OUT/$name-$DATE.md"
  json="$OUT/$name-$DATE.json"
  cmd="${cmd//@JSON@/$json}"
  echo "run.sh: $name: $cmd" >&2
  if $cmd >"$md.tmp"; then
    mv "$md.tmp" "$md"
    if [ -f "$json" ]; then
      echo "run.sh: $name: wrote $md and $json" >&2
    else
      echo "run.sh: $name: wrote $md" >&2
    fi
    cat "$md"
  else
    rc=$?
    rm -f "$md.tmp"
    echo "run.sh: $name: failed (exit $rc)" >&2
    failed=1
  fi
done
exit "$failed"
