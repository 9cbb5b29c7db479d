#!/usr/bin/env bash
# Debian packages the project needs.
#   scripts/system-deps.sh          the pipeline: git (no fonts: the law PDFs use the non-embedded CID font STSong-Light)
#   scripts/system-deps.sh --test   also what the tests use: OpenSSH (SSH-remote tests), Chromium (offline plots)
# Another apt or dpkg run (a fresh cloud machine's unattended upgrades, at boot) holds apt's locks: every apt-get here
# waits for them, up to APT_LOCK_TIMEOUT seconds in all (default 600), instead of failing at once.
set -euo pipefail
needed=()
command -v git >/dev/null || needed+=(git)
if [ "${1:-}" = "--test" ]; then
  [ -x /usr/sbin/sshd ] || needed+=(openssh-server)
  command -v ssh-keygen >/dev/null || needed+=(openssh-client)
  command -v chromium >/dev/null || needed+=(chromium)
fi
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
lock_timeout="${APT_LOCK_TIMEOUT:-600}"
case "$lock_timeout" in
  '' | *[!0-9]*) echo "APT_LOCK_TIMEOUT must be a whole number of seconds, not '$lock_timeout'" >&2; exit 2 ;;
esac
deadline=$((SECONDS + lock_timeout))  # one deadline for all apt-get calls
apt_get() {
  # apt waits for dpkg's lock itself (DPkg::Lock::Timeout), but apt 2.6 refuses at once when another run holds the
  # package lists' or the download cache's lock (/var/lib/apt/lists/lock, /var/cache/apt/archives/lock): a run refused
  # on a lock is retried until the deadline. LC_ALL=C keeps apt's "Could not get lock" in the words matched below;
  # env inside sudo because sudo drops the caller's environment.
  local errors status
  errors="$(mktemp)"
  while true; do
    status=0
    $SUDO env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
      apt-get -o DPkg::Lock::Timeout="$((deadline > SECONDS ? deadline - SECONDS : 0))" "$@" 2>"$errors" || status=$?
    if [ "$status" -ne 0 ] && grep -q "Could not get lock" "$errors" && [ "$SECONDS" -lt "$deadline" ]; then
      echo "apt-get $1: $(grep -m1 "Could not get lock" "$errors" | sed 's/^E: //'); retrying for up to $((deadline - SECONDS)) s" >&2
      sleep "$((deadline - SECONDS < 5 ? deadline - SECONDS : 5))"
      continue
    fi
    cat "$errors" >&2
    if [ "$status" -ne 0 ] && grep -qi "lock" "$errors"; then
      echo "Another apt or dpkg run still held its lock after ${lock_timeout} s (on a fresh machine, often unattended" \
        "upgrades: see 'ps -C apt-get,apt,dpkg,unattended-upgr -o pid,etime,args'). Wait for it to finish and run" \
        "this again, or give it longer: APT_LOCK_TIMEOUT=1800 make install (seconds)." >&2
    fi
    rm -f "$errors"
    return "$status"
  done
}
echo "installing Debian packages: ${needed[*]} (should another apt or dpkg run hold its locks, this waits up to ${lock_timeout} s)"
apt_get update -qq
apt_get install -y -qq "${needed[@]}" >/dev/null
