#!/usr/bin/env bash
# Render `dvc plots show` offline in headless Chromium and save the page as docs/plots.png
# (the picture in docs/team.md). Usage: bash scripts/plots_png.sh [width] [height]
set -euo pipefail
cd "$(dirname "$0")/.."
width="${1:-1500}"
height="${2:-700}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
dvc plots show -o "$out" >/dev/null
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --host-resolver-rules="MAP * ~NOTFOUND" --user-data-dir="$out/profile" \
  --window-size="$width,$height" --virtual-time-budget=10000 \
  --screenshot="$PWD/docs/plots.png" "file://$out/index.html" 2>/dev/null
echo "wrote docs/plots.png ($width x $height)"
