#!/usr/bin/env bash
# Debian packages the pipeline and tests need: fonts to render the bundled
# law PDF (CJK + Latin), git for DVC, OpenSSH (server and client) for the
# SSH-remote tests, Chromium for the offline-plots test.
set -euo pipefail
needed=()
[ -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || needed+=(fonts-droid-fallback)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || needed+=(fonts-dejavu-core)
command -v git >/dev/null || needed+=(git)
[ -x /usr/sbin/sshd ] || needed+=(openssh-server)
command -v ssh-keygen >/dev/null || needed+=(openssh-client)
command -v chromium >/dev/null || needed+=(chromium)  # offline plots test
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "installing Debian packages: ${needed[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${needed[@]}" >/dev/null
