#!/usr/bin/env bash
# Builds podcell's LOCAL runtime base images from Debian packages, with no
# container registry: debootstrap a minimal Debian root file system, slim it,
# and `podman import` it. See docs/runtimes.md.
#
#   localhost/podcell-runtime:python3.11-debian       bookworm: python3 3.11, pip, venv
#   localhost/podcell-runtime:node20-debian           trixie: nodejs 20, npm
#                                                     (bookworm's nodejs 18 if trixie is unreachable)
#   localhost/podcell-runtime:python3.11-node-debian  bookworm: python3 3.11, pip, venv, nodejs 18, npm
#
# Usage: scripts/build-base-images.sh [RUNTIME...]   (default: all three; RUNTIME is
#        the part after the colon, e.g. python3.11-debian)
#
# Idempotent: an image whose tag exists and whose recipe label matches this script's
# recipe is kept; FORCE=1 rebuilds. Every image is checked with podman run, and a
# freshly built one also with a podman build FROM it with RUN steps; any failure
# exits non-zero. Needs root (debootstrap, rootful Podman storage).
#
# Environment:
#   FORCE=1                      rebuild even if the image exists
#   PODCELL_DEBIAN_MIRROR        Debian mirror (default: the one apt uses, from
#                                /etc/apt/sources.list*)
#   PODCELL_DEBIAN_SECURITY      security mirror written into the images' apt sources
#                                (default: from apt's sources; none if apt has none)
#   PODCELL_NODE_SUITE           Debian suite for node20-debian (default trixie; when
#                                trixie's Release is unreachable it falls back to bookworm)
#   PODCELL_DEBOOTSTRAP_CACHE    .deb cache kept between runs (default /var/cache/podcell/debootstrap)
#   PODCELL_BASE_IMAGES_LOGDIR   debootstrap and apt-get logs (default /var/log/podcell-base-images)
#   PODCELL_PODMAN_TIMEOUT       seconds any podman command may take (default 900)
#   PODCELL_SKIP_APT=1           do not install debootstrap (fail if it is missing)
set -euo pipefail

REPO=localhost/podcell-runtime
ALL_RUNTIMES=(python3.11-debian node20-debian python3.11-node-debian)
# Bump to rebuild every image when the way images are made changes (slimming, ENV, ...).
RECIPE_VERSION=2

CACHE="${PODCELL_DEBOOTSTRAP_CACHE:-/var/cache/podcell/debootstrap}"
LOGDIR="${PODCELL_BASE_IMAGES_LOGDIR:-/var/log/podcell-base-images}"
NODE_SUITE="${PODCELL_NODE_SUITE:-trixie}"
FORCE="${FORCE:-0}"

say() { printf 'build-base-images: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap needs it and the images go to rootful Podman storage); try: sudo $0"
command -v podman >/dev/null || die "podman is not installed: run 'make setup' (scripts/setup-host.sh) as root"
command -v dpkg >/dev/null || die "this script needs a Debian-like host (dpkg, apt) to run debootstrap"

want=("$@")
[ "${#want[@]}" -gt 0 ] || want=("${ALL_RUNTIMES[@]}")
for r in "${want[@]}"; do
  case " ${ALL_RUNTIMES[*]} " in *" $r "*) ;; *) die "unknown runtime '$r' (known: ${ALL_RUNTIMES[*]})" ;; esac
done

# --- tools ------------------------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
command -v wget >/dev/null || need+=(wget)
if [ "${#need[@]}" -gt 0 ]; then
  [ "${PODCELL_SKIP_APT:-0}" = 1 ] && die "missing packages: ${need[*]} (PODCELL_SKIP_APT=1 forbids installing them)"
  say "installing ${need[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || die "apt-get install ${need[*]} failed"
fi
[ -e /usr/share/debootstrap/scripts/"$NODE_SUITE" ] || die "this debootstrap does not know suite '$NODE_SUITE'"

# --- mirrors: the ones apt already uses ---------------------------------------
# Prints the first URI of an enabled apt source (one-line .list or deb822 .sources)
# whose suites include $1 (an exact suite name such as bookworm or bookworm-security).
apt_uri_for_suite() {
  local suite="$1" f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v s="$suite" '
      $1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    if ($(i+1) == s) { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v s="$suite" '
      function flush() { if (deb && en && uri != "") { n = split(suites, a, " "); for (k = 1; k <= n; k++) if (a[k] == s) { print uri; exit } }
                         deb = 0; en = 1; uri = ""; suites = "" }
      BEGIN { en = 1 }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:"   { for (k = 2; k <= NF; k++) if ($k == "deb") deb = 1 }
      tolower($1) == "uris:"    { uri = $2 }
      tolower($1) == "suites:"  { suites = ""; for (k = 2; k <= NF; k++) suites = suites " " $k }
      tolower($1) == "enabled:" { en = (tolower($2) != "no") }
      END { flush() }' "$f"
  done
}
MIRROR="${PODCELL_DEBIAN_MIRROR:-$(apt_uri_for_suite bookworm | head -n1)}"
[ -n "$MIRROR" ] || die "no Debian mirror for bookworm in /etc/apt/sources.list*: set PODCELL_DEBIAN_MIRROR to your Debian mirror's URL"
MIRROR="${MIRROR%/}"
SECURITY="${PODCELL_DEBIAN_SECURITY:-$(apt_uri_for_suite bookworm-security | head -n1)}"
SECURITY="${SECURITY%/}"
case "$MIRROR" in http://*|https://*|file:/*) ;; *) die "mirror '$MIRROR' is not an http(s) or file: URL; set PODCELL_DEBIAN_MIRROR" ;; esac

reachable() {
  case "$MIRROR" in
    file:*) [ -r "${MIRROR#file:}/dists/$1/Release" ] ;;
    *) wget -q --tries=2 --timeout=20 -O /dev/null "$MIRROR/dists/$1/Release" ;;
  esac
}

# --- one lock for the whole run (two builds would share the cache and tags) ---
mkdir -p "$CACHE" "$LOGDIR"
exec 9>"$CACHE/.lock"
flock -n 9 || { say "another build-base-images run holds $CACHE/.lock; waiting"; flock 9; }

# --- work directories, cleaned up even on failure ----------------------------
WORKROOT=""
cleanup_work() {
  local d="$1" m
  [ -n "$d" ] && [ -d "$d" ] || return 0
  # debootstrap mounts proc and sys in its target and can leave them if it dies.
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
    awk -v d="$d/" 'index($2 "/", d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -rf --one-file-system "$d"
}
trap 'cleanup_work "$WORKROOT"' EXIT
trap 'exit 130' INT TERM
workroot() {
  [ -n "$WORKROOT" ] || { WORKROOT="$(mktemp -d "${TMPDIR:-/var/tmp}/podcell-base-images.XXXXXX")"; chmod 0755 "$WORKROOT"; }
}

# Guards every function that deletes or writes inside a root file system.
is_work_root() {
  case "$1" in
    "$WORKROOT"/?*) [ -n "$WORKROOT" ] && [ -e "$1/etc/debian_version" ] && return 0 ;;
  esac
  die "internal error: '$1' is not a root file system under this run's work directory"
}

# Runs a command inside a root file system, in a private mount namespace: its own
# /proc and /dev/pts and, with a cache directory, that directory as apt's package
# cache. The mounts disappear with the namespace, whatever happens.
in_root() {
  local root="$1" cache="$2"; shift 2
  # shellcheck disable=SC2016 # expanded by the inner shell
  unshare --mount --propagation private --fork -- /bin/sh -c '
    root="$1" cache="$2"; shift 2
    mount -t proc proc "$root/proc" || exit 1
    mkdir -p "$root/dev/pts" && mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" 2>/dev/null || true
    if [ -n "$cache" ]; then mkdir -p "$cache/partial" && mount --bind "$cache" "$root/var/cache/apt/archives" || exit 1; fi
    exec chroot "$root" /usr/bin/env -i DEBIAN_FRONTEND=noninteractive \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
  ' sh "$root" "$cache" "$@"
}

# --- recipes -----------------------------------------------------------------
# Sets SUITE PKGS CMD ENVS NOTE for runtime $1.
PY_PKGS="python3 python-is-python3 python3-pip python3-venv"
PY_ENV=(
  # PEP 668: Debian 12 marks its Python "externally managed", and `pip install`
  # outside a venv fails. A build installs an app's requirements into the image,
  # which is what the marker exists to stop on a shared system; here the image is
  # the app's. ENV (not deleting /usr/lib/python3.11/EXTERNALLY-MANAGED) survives
  # a RUN apt-get that upgrades python3.11 and reinstalls the marker. pip installs
  # to /usr/local/lib/python3.11/dist-packages, beside Debian's packages.
  PIP_BREAK_SYSTEM_PACKAGES=1
  PIP_DISABLE_PIP_VERSION_CHECK=1  # no call to PyPI on every pip run (offline builds)
  PIP_ROOT_USER_ACTION=ignore      # builds run pip as root; no warning
)
recipe() {
  NOTE=""; ENVS=()
  case "$1" in
    python3.11-debian)
      SUITE=bookworm; PKGS="ca-certificates $PY_PKGS"; CMD='["python3"]'; ENVS=("${PY_ENV[@]}") ;;
    node20-debian)
      SUITE="$NODE_SUITE"; PKGS="ca-certificates nodejs npm"; CMD='["node"]' ;;
    python3.11-node-debian)
      SUITE=bookworm; PKGS="ca-certificates $PY_PKGS nodejs npm"; CMD='["python3"]'; ENVS=("${PY_ENV[@]}")
      NOTE="Node.js 18 from Debian 12 (bookworm), the newest Node.js that Debian 12 has" ;;
  esac
}

# Measured versions of runtime $2's programs, e.g. "python 3.11.2 node 18.20.4 npm 9.2.0".
# (node20-debian also has trixie's python3, a dependency of npm via node-gyp: not its runtime.)
measure_versions() {
  local root="$1" rt="$2" out="" v
  case "$rt" in
    python3.11-*)
      v="$(in_root "$root" "" python3 -c 'import platform; print(platform.python_version())')" || return 1
      out="python $v" ;;
  esac
  case "$rt" in
    node*|*-node-*)
      v="$(in_root "$root" "" node -p 'process.versions.node')" || return 1
      out="${out:+$out }node $v"
      v="$(in_root "$root" "" npm --version)" || return 1
      out="$out npm $v" ;;
  esac
  printf '%s' "$out"
}

# A debootstrap minbase of a suite, made once per run and copied for each image.
# Sets BASE to its path and BASE_SECONDS to the time debootstrap took (0: made earlier).
BASE="" BASE_SECONDS=0
base_rootfs() {
  local suite="$1" log="$LOGDIR/debootstrap-$1.log" t0=$SECONDS
  workroot
  BASE="$WORKROOT/base-$suite"; BASE_SECONDS=0
  [ -e "$BASE/etc/debian_version" ] && return 0
  mkdir -p "$CACHE/$suite"
  say "debootstrap --variant=minbase $suite from $MIRROR (log: $log)"
  if ! debootstrap --variant=minbase --merged-usr \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        --cache-dir="$CACHE/$suite" "$suite" "$BASE" "$MIRROR" >"$log" 2>&1 </dev/null; then
    say "debootstrap $suite failed; the end of $log:"
    tail -n 30 "$log" >&2
    [ -f "$BASE/debootstrap/debootstrap.log" ] && { say "the end of debootstrap.log:"; tail -n 30 "$BASE/debootstrap/debootstrap.log" >&2; }
    return 1
  fi
  BASE_SECONDS=$((SECONDS - t0))
  say "debootstrap $suite: $BASE_SECONDS s"
}

write_sources() {
  local root="$1" suite="$2"
  is_work_root "$root"
  rm -f "$root/etc/apt/sources.list"
  mkdir -p "$root/etc/apt/sources.list.d"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  [ -n "$SECURITY" ] || return 0
  cat >> "$root/etc/apt/sources.list.d/debian.sources" <<EOF

Types: deb
URIs: $SECURITY
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# Settings that stay in the image, for this build's apt-get and for later
# `RUN apt-get install` in a Containerfile (as in Docker's Debian images): no docs,
# man pages or translations, no fsync per file, no service started.
image_dpkg_config() {
  local root="$1"
  is_work_root "$root"
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  cat > "$root/etc/dpkg/dpkg.cfg.d/podcell-slim" <<'EOF'
# podcell base image: keep images small (copyright files stay)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  # An image layer needs no fsync per unpacked file, which makes dpkg much slower.
  printf '# podcell base image: image layers need no fsync per file\nforce-unsafe-io\n' \
    > "$root/etc/dpkg/dpkg.cfg.d/podcell-unsafe-io"
  printf '#!/bin/sh\n# podcell base image: no service starts during package installs\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
}

# Removes what a container never needs; keeps apt and dpkg working.
slim_rootfs() {
  local root="$1"
  is_work_root "$root"
  # Files debootstrap installed before the dpkg excludes existed.
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  # Written only now: during the build's apt-get it would empty the shared .deb cache.
  mkdir -p "$root/etc/apt/apt.conf.d"
  cat > "$root/etc/apt/apt.conf.d/podcell-clean" <<'EOF'
// podcell base image: no .deb files or package caches left in image layers
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
  # apt and debootstrap leftovers, logs, host identity.
  rm -rf "$root"/var/cache/apt/archives/* "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
         "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/debootstrap
  mkdir -p "$root/var/lib/apt/lists/partial" "$root/var/cache/apt/archives/partial"
  find "$root/var/log" -type f -delete
  rm -rf "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache "$root"/root/.npm "$root"/root/.config
  rm -f "$root/etc/hostname" "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
  : > "$root/etc/resolv.conf"
  # Podman mounts /dev, /proc and /sys itself.
  rm -rf "${root:?}"/dev/* "${root:?}"/proc/* "${root:?}"/sys/* 2>/dev/null || true
  mkdir -p "$root/app"
}

# --- podman, with a deadline ---------------------------------------------------
# A podman process that holds the storage lock (a stuck API service, say) blocks
# every other one: fail with the holder's name instead of hanging the build.
PODMAN_TIMEOUT="${PODCELL_PODMAN_TIMEOUT:-900}"
storage_lock_hint() {
  local lock=/var/lib/containers/storage/storage.lock ino pid
  [ -e "$lock" ] || return 0
  ino="$(stat -c %i "$lock")"
  # /proc/locks: "1: POSIX ADVISORY WRITE <pid> <maj:min:inode> 0 EOF"; waiters have "->".
  pid="$(awk -v i="$ino" '$2 != "->" && split($6, a, ":") == 3 && a[3] == i { print $5; exit }' /proc/locks)"
  [ -n "$pid" ] && say "$lock is held by pid $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-150)"
  return 0
}
pm() {
  local rc=0
  timeout -k 10 "$PODMAN_TIMEOUT" podman "$@" || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    say "podman $1 did not finish in $PODMAN_TIMEOUT s (PODCELL_PODMAN_TIMEOUT)"
    storage_lock_hint
  fi
  return "$rc"
}

image_size_mb() { pm image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f", $1 / 1000000 }'; }
label() { pm image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null || true; }

# --- plan: which images to build, from which suite ---------------------------
declare -A PLAN_SUITE PLAN_NOTE PLAN_RECIPE
BUILD=() KEEP=()
plan_one() {
  local rt="$1" tag="$REPO:$1" recipe_id have have_suite
  recipe "$rt"
  recipe_id="$(printf '%s|' "$RECIPE_VERSION" "$SUITE" "$PKGS" "$CMD" "${ENVS[@]}" "$NOTE" | sha256sum | cut -c1-16)"
  if [ "$FORCE" != 1 ] && pm image exists "$tag"; then
    have="$(label "$tag" podcell.runtime.recipe)"
    # A fallback image (bookworm instead of trixie) is kept only while trixie stays unreachable.
    have_suite="$(label "$tag" podcell.runtime.debian)"; have_suite="${have_suite%% *}"
    if [ "$have" = "$recipe_id" ] && [ "$have_suite" != "$SUITE" ] && reachable "$SUITE"; then
      say "$tag was built from $have_suite because $SUITE was unreachable; $SUITE answers now: rebuilding"
    elif [ "$have" = "$recipe_id" ]; then
      say "$tag exists ($(label "$tag" podcell.runtime.versions), $(image_size_mb "$tag") MB); FORCE=1 rebuilds it"
      KEEP+=("$rt")
      return 0
    else
      say "$tag exists but was made by another recipe (${have:-none} != $recipe_id): rebuilding"
    fi
  fi
  if [ "$rt" = node20-debian ] && [ "$SUITE" != bookworm ] && ! reachable "$SUITE"; then
    say "warning: $MIRROR/dists/$SUITE/Release is unreachable: $tag falls back to bookworm's Node.js 18"
    SUITE=bookworm
    NOTE="Node.js 18 from Debian 12 (bookworm): Debian 13 (trixie, Node.js 20) was unreachable when this image was built; the tag says node20 but the image has Node.js 18"
  fi
  PLAN_SUITE[$rt]="$SUITE" PLAN_NOTE[$rt]="$NOTE" PLAN_RECIPE[$rt]="$recipe_id"
  BUILD+=("$rt")
}

# --- build one image ---------------------------------------------------------
build_one() {
  local rt="$1" tag="$REPO:$1" log="$LOGDIR/$1.log" t0 t1 t2 t3 root versions recipe_id old_id
  recipe "$rt"
  SUITE="${PLAN_SUITE[$rt]}" NOTE="${PLAN_NOTE[$rt]}" recipe_id="${PLAN_RECIPE[$rt]}"
  t0=$SECONDS
  root="$WORKROOT/$rt"
  rm -rf --one-file-system "$root"
  if [ "$rt" = python3.11-node-debian ] && [ -e "$WORKROOT/pre-python3.11-debian/etc/debian_version" ]; then
    # Made by python3.11-debian in this run: bookworm + Python, before slimming.
    mv "$WORKROOT/pre-python3.11-debian" "$root"
    BASE_SECONDS=0
  else
    base_rootfs "$SUITE" || die "could not build $tag: debootstrap $SUITE failed"
    cp -a "$BASE" "$root"
  fi
  write_sources "$root" "$SUITE"
  image_dpkg_config "$root"
  t1=$SECONDS
  say "building $tag: apt-get install --no-install-recommends $PKGS (log: $log)"
  # debootstrap left the suite's index; update adds -updates and -security, and
  # dist-upgrade takes their fixes for what debootstrap installed.
  # shellcheck disable=SC2086,SC2016 # PKGS is a list of names; $o and $@ are the inner shell's
  if ! in_root "$root" "$CACHE/$SUITE" /bin/sh -ec '
        o="-q -o Acquire::Languages=none -o APT::Keep-Downloaded-Packages=true -o Dpkg::Use-Pty=0"
        apt-get $o update
        apt-get $o -y dist-upgrade
        apt-get $o -y install --no-install-recommends "$@"
      ' sh $PKGS >"$log" 2>&1 </dev/null; then
    say "apt-get in the $SUITE root file system failed; the end of $log:"
    tail -n 30 "$log" >&2
    die "could not build $tag"
  fi
  t2=$SECONDS
  if [ "$rt" = python3.11-debian ] && [ -n "${PLAN_SUITE[python3.11-node-debian]:-}" ]; then
    cp -a "$root" "$WORKROOT/pre-python3.11-debian"
  fi

  versions="$(measure_versions "$root" "$rt")" || die "$tag: the runtime binaries do not run in the new root file system"
  case "$rt" in
    python3.11-*) [[ "$versions" == "python 3.11."* ]] || die "$tag: expected Python 3.11, measured '$versions'" ;;
  esac
  if [ "$rt" = node20-debian ] && [ "$SUITE" != bookworm ]; then
    [[ "$versions" == "node 20."* ]] || die "$tag: expected Node.js 20 from $SUITE, measured '$versions'"
  fi
  slim_rootfs "$root"

  local changes=(
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV LANG=C.UTF-8'
    --change 'WORKDIR /app'
    --change "CMD $CMD"
    --change "LABEL podcell.runtime=$rt"
    --change "LABEL podcell.runtime.versions=\"$versions\""
    --change "LABEL podcell.runtime.debian=\"$SUITE $(cat "$root/etc/debian_version")\""
    --change "LABEL podcell.runtime.recipe=$recipe_id"
  )
  local e
  for e in "${ENVS[@]}"; do changes+=(--change "ENV $e"); done
  [ -n "$NOTE" ] && changes+=(--change "LABEL podcell.runtime.note=\"$NOTE\"")

  old_id="$(pm image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  tar -C "$root" --numeric-owner -c . \
    | pm import --quiet --message "podcell base image $rt: debootstrap $SUITE + $PKGS" "${changes[@]}" - "$tag" >/dev/null \
    || die "podman import of $tag failed"
  rm -rf --one-file-system "$root"
  # The replaced image, if nothing else uses it.
  if [ -n "$old_id" ] && [ "$old_id" != "$(pm image inspect --format '{{.Id}}' "$tag")" ] \
     && [ -z "$(pm image inspect --format '{{join .RepoTags ""}}' "$old_id" 2>/dev/null)" ]; then
    pm rmi "$old_id" >/dev/null 2>&1 || true
  fi
  t3=$SECONDS
  say "built $tag ($versions, $(image_size_mb "$tag") MB) in $((t3 - t0)) s: debootstrap $BASE_SECONDS s$([ "$BASE_SECONDS" = 0 ] && echo ' (shared)'), apt-get $((t2 - t1)) s, slim+import $((t3 - t2)) s"
  [ -n "$NOTE" ] && say "note: $tag: $NOTE"
  return 0
}

# --- verify ------------------------------------------------------------------
# Every image: one podman run of its runtimes. A freshly built one also: podman
# build FROM it with RUN pip install -r (comment-only requirements.txt) and
# RUN npm install (package.json without dependencies), with no network.
verify_one() {
  local rt="$1" full="$2" tag="$REPO:$1" t0=$SECONDS ctx out want_out="" script="" id
  case "$rt" in
    python3.11-*)
      script="python3 -c 'print(1)'; python3 -m venv /tmp/v && /tmp/v/bin/pip --version >/dev/null && pip --version >/dev/null && echo venv-ok;"
      want_out="1 venv-ok " ;;
  esac
  case "$rt" in
    node*|*-node-*)
      script="$script node -e 'console.log(1)'; npm --version >/dev/null && echo npm-ok;"
      want_out="${want_out}1 npm-ok " ;;
  esac
  out="$(pm run --rm --network none "$tag" /bin/sh -ec "$script" </dev/null 2>&1 | tr '\n' ' ')" || true
  [ "$out" = "$want_out" ] || die "$tag does not work: podman run printed '$out' (wanted '$want_out')"
  if [ "$full" != full ]; then
    say "verified $tag (podman run) in $((SECONDS - t0)) s"
    return 0
  fi
  ctx="$(mktemp -d "${TMPDIR:-/tmp}/podcell-verify.XXXXXX")"
  {
    echo "FROM $tag"
    case "$rt" in
      python3.11-*)
        printf '# comments only: nothing to install\n' > "$ctx/requirements.txt"
        echo 'COPY requirements.txt ./'
        echo 'RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir -r /dev/null' ;;
    esac
    case "$rt" in
      node*|*-node-*)
        printf '{"name":"podcell-verify","version":"1.0.0","private":true}\n' > "$ctx/package.json"
        echo 'COPY package.json ./'
        echo 'RUN npm --version && npm install --offline --no-audit --no-fund' ;;
    esac
  } > "$ctx/Containerfile"
  if ! id="$(pm build --quiet --network none --layers=false --pull=never -f "$ctx/Containerfile" "$ctx" 2>"$ctx/err" </dev/null)"; then
    cat "$ctx/Containerfile" "$ctx/err" >&2; rm -rf "$ctx"
    die "$tag: podman build FROM it with a RUN step failed"
  fi
  pm rmi "$id" >/dev/null 2>&1 || true
  rm -rf "$ctx"
  say "verified $tag (podman run + podman build) in $((SECONDS - t0)) s"
}

# --- main --------------------------------------------------------------------
say "mirror $MIRROR, security $SECURITY, cache $CACHE"
start=$SECONDS
for r in "${want[@]}"; do plan_one "$r"; done

if [ "${#BUILD[@]}" -gt 0 ]; then
  workroot
  # One job per Debian suite, side by side (downloads and dpkg overlap); the
  # images of one suite are built one after the other and share its debootstrap.
  declare -A JOBS=()
  for suite in bookworm "$NODE_SUITE"; do
    group=()
    for r in "${BUILD[@]}"; do [ "${PLAN_SUITE[$r]}" = "$suite" ] && group+=("$r"); done
    [ "${#group[@]}" -gt 0 ] || continue
    [ -z "${JOBS[$suite]:-}" ] || continue
    ( for r in "${group[@]}"; do build_one "$r"; done ) &
    JOBS[$suite]=$!
  done
  stop_jobs() { local p; for p in "${JOBS[@]}"; do kill "$p" 2>/dev/null || true; done; wait; }
  trap 'stop_jobs; cleanup_work "$WORKROOT"' EXIT
  failed=()
  for suite in "${!JOBS[@]}"; do wait "${JOBS[$suite]}" || failed+=("$suite"); done
  JOBS=()
  [ "${#failed[@]}" -eq 0 ] || die "building the ${failed[*]} images failed (see the messages above)"
  cleanup_work "$WORKROOT"
fi

for r in "${BUILD[@]}"; do verify_one "$r" full; done
for r in "${KEEP[@]}"; do verify_one "$r" quick; done
# Packages no build has used for two months (relatime updates atime daily at most).
find "$CACHE" -name '*.deb' -atime +60 -delete 2>/dev/null || true
say "done in $((SECONDS - start)) s: $(for r in "${want[@]}"; do printf '%s ' "$REPO:$r"; done)"
