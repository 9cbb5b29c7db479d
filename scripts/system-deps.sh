#!/usr/bin/env bash
# Debian packages the pipeline and tests need: fonts to render the bundled
# law PDF (CJK + Latin), git for DVC.
set -euo pipefail
needed=()
[ -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || needed+=(fonts-droid-fallback)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || needed+=(fonts-dejavu-core)
command -v git >/dev/null || needed+=(git)
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "installing Debian packages: ${needed[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${needed[@]}" >/dev/null
