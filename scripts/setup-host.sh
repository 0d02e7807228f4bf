#!/usr/bin/env bash
# Prepares a Debian-like host to run podcell: Podman with runc, a containers.conf
# that works under this kernel's limits, subordinate ids for --userns=auto, and
# the Podman API service on a socket. Safe to run again: every step checks first.
#
# Environment:
#   PODCELL_PODMAN_SOCKET  socket path for the API service (default /run/podman/podman.sock)
#   PODCELL_SKIP_APT=1     do not install packages (fail if they are missing)
set -euo pipefail

SOCKET="${PODCELL_PODMAN_SOCKET:-/run/podman/podman.sock}"

say() { printf 'setup-host: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and writes /etc/containers); try: sudo $0"
[ -r /etc/os-release ] || die "cannot read /etc/os-release; only Debian-like hosts are supported"
. /etc/os-release
case " ${ID:-} ${ID_LIKE:-} " in
  *" debian "*|*" ubuntu "*) ;;
  *) die "host is '${PRETTY_NAME:-unknown}'; this script supports Debian-like hosts (apt). Install Podman >= 4.3 and runc yourself, then start 'podman system service --time=0 unix://$SOCKET'." ;;
esac

# 1. Packages. crun 1.8 refuses cgroup v1 hybrid hosts, so runc is required.
PKGS=(podman runc conmon slirp4netns uidmap fuse-overlayfs catatonit netavark aardvark-dns iptables curl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "${PODCELL_SKIP_APT:-0}" = 1 ] && die "missing packages: ${missing[*]} (PODCELL_SKIP_APT=1 forbids installing them)"
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Chromium, headless, for the dashboard's browser tests (make test). Without
# recommends: those bring systemd, udev, CUPS and avahi, which it does not use.
if [ ! -x /usr/bin/chromium ]; then
  [ "${PODCELL_SKIP_APT:-0}" = 1 ] && die "chromium is missing (PODCELL_SKIP_APT=1 forbids installing it); the dashboard's browser tests need it"
  say "installing chromium (headless browser for the dashboard's tests)"
  [ "${#missing[@]}" -gt 0 ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
fi

# A wedged Podman: Podman 4.3 can deadlock on its container locks when a
# process holding one dies or under heavy concurrent use; every call then
# hangs. Detect it (a plain listing must answer) and reset the locks.
if ! timeout 30 podman ps -a -q >/dev/null 2>&1; then
  say "podman does not answer a container listing within 30s: resetting its locks"
  pkill -9 -f "podman system service --time=0 unix://$SOCKET" || true # not a rootless user's service
  pkill -9 -u 0 -f 'podman .*container cleanup' || true
  sleep 1
  timeout 120 podman system renumber || die "podman system renumber failed; reboot the host to clear Podman's locks"
  timeout 30 podman ps -a -q >/dev/null || die "podman still hangs after resetting its locks; reboot the host"
fi

ver="$(podman --version | awk '{print $3}')"
major="${ver%%.*}"; rest="${ver#*.}"; minor="${rest%%.*}"
if [ "$major" -lt 4 ] || { [ "$major" -eq 4 ] && [ "$minor" -lt 3 ]; }; then
  die "podman $ver is too old; podcell needs 4.3 or newer"
fi

# 2. containers.conf: the runtime must be chosen service-side (the 4.3 API ignores a
# per-container OCI runtime) and Podman's default ulimits (1048576) exceed the hard
# nofile limit of unprivileged hosts, which makes every start fail.
hard_nofile="$(ulimit -Hn)"
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
[ "$hard_nofile" -gt 1048576 ] && hard_nofile=1048576
conf=/etc/containers/containers.conf
mkdir -p /etc/containers
want="# written by podcell scripts/setup-host.sh
[containers]
default_ulimits = [\"nofile=${hard_nofile}:${hard_nofile}\", \"nproc=32768:32768\"]

[engine]
runtime = \"runc\"
"
if [ ! -f "$conf" ] || ! grep -q 'podcell scripts/setup-host.sh' "$conf"; then
  [ -f "$conf" ] && cp "$conf" "$conf.podcell-backup" && say "kept the old $conf as $conf.podcell-backup"
  printf '%s' "$want" > "$conf"
  say "wrote $conf"
elif [ "$(cat "$conf")" != "$(printf '%s' "$want")" ]; then
  printf '%s' "$want" > "$conf"
  say "updated $conf"
fi

# 3. Subordinate ids for rootful --userns=auto (container root maps to an unprivileged host uid).
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  grep -q '^containers:' "$f" || { echo 'containers:2147483647:2147483648' >> "$f"; say "added containers range to $f"; }
done

# 4. The API service. Without systemd (containers, CI VMs) we run it ourselves.
answers() { curl -fsS --max-time 3 --unix-socket "$SOCKET" http://d/v4.0.0/libpod/_ping >/dev/null 2>&1; }
command -v curl >/dev/null || { apt-get install -y -qq curl >/dev/null; }
# A service can answer pings while a deadlock inside it blocks every real
# call (Podman 4.3, containers/storage#1387): ask for info too, and start
# it anew when that hangs.
if answers && ! curl -fsS --max-time 30 --unix-socket "$SOCKET" http://d/v4.0.0/libpod/info >/dev/null 2>&1; then
  say "the podman API service answers pings but not calls: restarting it"
  pkill -9 -f "podman system service --time=0 unix://$SOCKET" || true
  sleep 1
fi
if answers; then
  say "podman API already answers on $SOCKET"
else
  mkdir -p "$(dirname "$SOCKET")"
  rm -f "$SOCKET"
  if [ -d /run/systemd/system ] && [ "$SOCKET" = /run/podman/podman.sock ]; then
    systemctl enable --now podman.socket >/dev/null 2>&1 || true
  fi
  if ! answers; then
    log=/var/log/podcell-podman-service.log
    setsid nohup podman system service --time=0 "unix://$SOCKET" >"$log" 2>&1 < /dev/null &
    for _ in $(seq 1 100); do answers && break; sleep 0.1; done
  fi
  answers || die "podman API service did not answer on $SOCKET; see /var/log/podcell-podman-service.log"
  say "podman API service answers on $SOCKET"
fi

# 5. What podcell will find.
cg=v1; [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && cg=v2
say "ready: podman $ver, runtime runc, cgroup $cg, socket unix://$SOCKET"
