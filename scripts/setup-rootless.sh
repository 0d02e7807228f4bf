#!/usr/bin/env bash
# Prepares a rootless Podman API service for podcell's rootless tests (and shows
# what a rootless deployment needs): a system user with a home, subordinate ids,
# overlay storage, slirp4netns networking, an XDG_RUNTIME_DIR, and
# 'podman system service' running as that user. Safe to run again: every step
# checks first. Run scripts/setup-host.sh before it (it installs Podman, runc,
# uidmap, slirp4netns and writes /etc/containers/containers.conf, which rootless
# Podman reads too).
#
# Prints the socket URI (unix:///run/user/<uid>/podman/podman.sock) on stdout,
# and nothing else; messages go to stderr. Typical use:
#   export PODCELL_ROOTLESS_URI="$(bash scripts/setup-rootless.sh)"
#
# Environment:
#   PODCELL_ROOTLESS_USER  the user that runs rootless Podman (default podcell)
set -euo pipefail

USER_NAME="${PODCELL_ROOTLESS_USER:-podcell}"
SUBID_COUNT=65536
# setup-host.sh gives this range to rootful --userns=auto; ours must stay below it.
CONTAINERS_SUBID_START=2147483647

say() { printf 'setup-rootless: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it creates a user and starts a service as that user); try: sudo $0"
[ -r /etc/os-release ] || die "cannot read /etc/os-release; only Debian-like hosts are supported"
. /etc/os-release
case " ${ID:-} ${ID_LIKE:-} " in
  *" debian "*|*" ubuntu "*) ;;
  *) die "host is '${PRETTY_NAME:-unknown}'; this script supports Debian-like hosts only" ;;
esac
case "$USER_NAME" in
  root|'') die "PODCELL_ROOTLESS_USER must name an unprivileged user, not '$USER_NAME'" ;;
esac

for cmd in podman newuidmap newgidmap slirp4netns runuser setsid curl useradd; do
  command -v "$cmd" >/dev/null || die "$cmd is missing; run scripts/setup-host.sh first (it installs podman, uidmap, slirp4netns and curl)"
done

# 1. The user, with a home (rootless images and containers live in it).
if ! getent passwd "$USER_NAME" >/dev/null; then
  useradd --system --create-home --home-dir "/home/$USER_NAME" --shell /usr/sbin/nologin \
    --comment "podcell rootless Podman" "$USER_NAME"
  say "created system user $USER_NAME"
fi
uid="$(id -u "$USER_NAME")"
gid="$(id -g "$USER_NAME")"
home="$(getent passwd "$USER_NAME" | cut -d: -f6)"
[ "$uid" != 0 ] || die "user $USER_NAME has uid 0; rootless Podman needs an unprivileged user"
[ -n "$home" ] && [ "$home" != / ] || die "user $USER_NAME has no home directory"
if [ ! -d "$home" ]; then
  install -d -m 0750 -o "$uid" -g "$gid" "$home"
  say "created $home"
fi
as_user() {
  (cd "$home" && runuser -u "$USER_NAME" -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="$home" USER="$USER_NAME" LOGNAME="$USER_NAME" XDG_RUNTIME_DIR="/run/user/$uid" "$@")
}

# 2. Subordinate uids and gids for the user namespace. A new range starts after
# every range in the file below the containers range (and at 100000 at least,
# Debian's SUB_UID_MIN).
subids_changed=0
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if line="$(grep -E "^($USER_NAME|$uid):" "$f" | head -1)" && [ -n "$line" ]; then
    start="${line#*:}"; start="${start%%:*}"; count="${line##*:}"
    [ "$count" -ge "$SUBID_COUNT" ] || die "$f gives $USER_NAME only $count ids ($line); it needs $SUBID_COUNT: fix or remove that line"
    [ $((start + count)) -le "$CONTAINERS_SUBID_START" ] || die "$f range for $USER_NAME ($line) overlaps the containers range setup-host.sh uses (from $CONTAINERS_SUBID_START): fix or remove that line"
    continue
  fi
  start="$(awk -F: -v lim="$CONTAINERS_SUBID_START" -v min=100000 '
    NF == 3 && $2 + 0 < lim { end = $2 + $3; if (end > min) min = end }
    END { print min }' "$f")"
  [ $((start + SUBID_COUNT)) -le "$CONTAINERS_SUBID_START" ] || die "no free subordinate id range below $CONTAINERS_SUBID_START in $f"
  echo "$USER_NAME:$start:$SUBID_COUNT" >> "$f"
  say "added $USER_NAME:$start:$SUBID_COUNT to $f"
  subids_changed=1
done

# 3. Storage: overlay (native in a user namespace on kernels >= 5.13, else
# fuse-overlayfs); without this file Podman 4.3 falls back to vfs or fails.
conf_dir="$home/.config/containers"
storage_conf="$conf_dir/storage.conf"
want_storage='# written by podcell scripts/setup-rootless.sh
[storage]
driver = "overlay"
'
if [ ! -f "$storage_conf" ] || [ "$(cat "$storage_conf")" != "$(printf '%s' "$want_storage")" ]; then
  install -d -m 0755 -o "$uid" -g "$gid" "$home/.config" "$conf_dir"
  [ -f "$storage_conf" ] && cp "$storage_conf" "$storage_conf.podcell-backup" && say "kept the old $storage_conf as $storage_conf.podcell-backup"
  printf '%s' "$want_storage" > "$storage_conf"
  chown "$uid:$gid" "$storage_conf"
  say "wrote $storage_conf"
fi

# 4. slirp4netns (rootless networking) opens /dev/net/tun as the user.
if [ ! -c /dev/net/tun ]; then
  modprobe tun 2>/dev/null || true
  if [ ! -c /dev/net/tun ]; then
    mkdir -p /dev/net
    mknod -m 0666 /dev/net/tun c 10 200 || die "/dev/net/tun is missing and cannot be made; rootless networking (slirp4netns) needs it"
  fi
fi
if [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  chmod 0666 /dev/net/tun
  say "made /dev/net/tun usable by every user (0666)"
fi

# 5. XDG_RUNTIME_DIR: systemd-logind would make it; without a login session we do.
run_dir="/run/user/$uid"
if [ ! -d "$run_dir" ]; then
  install -d -m 0755 /run/user
  install -d -m 0700 -o "$uid" -g "$gid" "$run_dir"
  say "created $run_dir"
elif [ "$(stat -c '%u %a' "$run_dir")" != "$uid 700" ]; then
  chown "$uid:$gid" "$run_dir"
  chmod 0700 "$run_dir"
  say "fixed owner and mode of $run_dir"
fi

socket="$run_dir/podman/podman.sock"
uri="unix://$socket"
log=/var/log/podcell-rootless-podman-service.log
answers() { curl -fsS --max-time 3 --unix-socket "$socket" http://d/v4.0.0/libpod/_ping >/dev/null 2>&1; }

# New subordinate ids only reach a user that already used Podman after a
# migrate, and a service already running keeps its old user namespace.
if [ "$subids_changed" = 1 ] && [ -d "$home/.local/share/containers" ]; then
  answers && die "a podman service already runs on $socket without the new subordinate ids; stop it, then run me again"
  as_user podman system migrate >&2 || die "podman system migrate as $USER_NAME failed"
  say "ran podman system migrate as $USER_NAME for the new subordinate ids"
fi

# 6. The API service, as the user. Without systemd we run it ourselves.
if answers; then
  say "rootless podman API already answers on $socket"
else
  # Nothing answers, so whatever the user's Podman left in $run_dir is stale: a
  # killed session (or a restored machine) keeps /run/user/<uid> but not the
  # rootless pause process, and Podman then refuses every command ("invalid
  # internal status ... could not find any running process"). Do what a reboot
  # does: stop the user's leftover processes and empty the runtime dir, so
  # Podman sees a fresh boot and refreshes its container states.
  if pkill -KILL -u "$uid" 2>/dev/null; then
    say "killed leftover processes of $USER_NAME (their API service did not answer)"
    for _ in $(seq 1 50); do pgrep -u "$uid" >/dev/null || break; sleep 0.1; done
  fi
  awk -v d="$run_dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  if [ -n "$(ls -A "$run_dir")" ]; then
    find "$run_dir" -mindepth 1 -delete 2>/dev/null || rm -rf "${run_dir:?}"/* || die "cannot empty stale $run_dir"
    say "emptied stale $run_dir (no Podman process of $USER_NAME was running)"
  fi
  as_user mkdir -p "$run_dir/podman"
  rm -f "$socket"
  as_user true # fails here, visibly, if the user cannot run commands
  # Every descriptor redirected: a service holding our stdout would hang
  # callers that read it ($(...)). Inherited ones (3 and up) are closed: a
  # caller running this under 'flock FILE bash setup-rootless.sh' would
  # otherwise leave its lock held by the service for as long as it runs.
  for fd in $(ls /proc/$$/fd); do
    [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
  done
  (cd "$home" && exec setsid nohup runuser -u "$USER_NAME" -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="$home" USER="$USER_NAME" LOGNAME="$USER_NAME" XDG_RUNTIME_DIR="$run_dir" \
    podman system service --time=0 "$uri") >"$log" 2>&1 </dev/null &
  for _ in $(seq 1 150); do answers && break; sleep 0.1; done
  answers || die "rootless podman API service did not answer on $socket; see $log"
  say "rootless podman API service answers on $socket"
fi

# 7. Check that the service is rootless and stores images on overlay.
info="$(curl -fsS --max-time 30 --unix-socket "$socket" http://d/v4.0.0/libpod/info)" || die "rootless podman info failed; see $log"
case "$info" in
  *'"rootless":true'*) ;;
  *) die "the service on $socket is not rootless" ;;
esac
driver="$(printf '%s' "$info" | sed -n 's/.*"graphDriverName":"\([^"]*\)".*/\1/p')"
[ "$driver" = overlay ] || die "rootless storage driver is '$driver', want overlay (see $storage_conf; after a change run 'podman system reset' as $USER_NAME)"
cg=v1; [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && cg=v2
[ "$cg" = v2 ] || say "note: cgroup v1: rootless Podman ignores memory and CPU limits here (podcell refuses services unless allow_unenforced_limits)"
say "ready: user $USER_NAME (uid $uid), storage $driver, cgroup $cg"
echo "$uri"
