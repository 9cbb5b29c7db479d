#!/usr/bin/env bash
# Debian packages the project needs.
#   scripts/system-deps.sh          the pipeline: git (no fonts: the law PDFs use the non-embedded CID font STSong-Light)
#   scripts/system-deps.sh --test   also what the tests use: OpenSSH (SSH-remote tests), Chromium (offline plots)
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
echo "installing Debian packages: ${needed[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${needed[@]}" >/dev/null
