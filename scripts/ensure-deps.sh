#!/usr/bin/env bash
# Install what carbonmap needs on a fresh Debian machine, only when it is missing:
# GDAL (libgdal-dev for building, gdal-bin for the command-line tools), pkg-config, and a TrueType font for
# the labels of PNG maps (fonts-dejavu-core).
set -euo pipefail
need=()
command -v gdal-config >/dev/null 2>&1 || need+=(libgdal-dev)
command -v gdalinfo >/dev/null 2>&1 || need+=(gdal-bin)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || [ -n "${CARBONMAP_FONT:-}" ] || need+=(fonts-dejavu-core)
for extra in "$@"; do
  dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
