#!/usr/bin/env bash
# Set up (GDAL when missing) and run every test. Real-data tests read $CARBONMAP_REAL_DATA, by default
# ../shared/real-data beside the checkout; with CI=true a missing folder fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
# python3-gdal and python3-numpy run the peer stack generator (tests/peer_annual.rs); chromium renders the
# HTML run report (tests/cli_outputs.rs, tests/annual_real.rs).
bash scripts/ensure-deps.sh python3-gdal python3-numpy chromium
: "${CARBONMAP_REAL_DATA:=$(cd .. && pwd)/shared/real-data}"
export CARBONMAP_REAL_DATA
if [ ! -d "$CARBONMAP_REAL_DATA" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "CARBONMAP_REAL_DATA=$CARBONMAP_REAL_DATA does not exist: real-data tests cannot run in CI" >&2
    exit 1
  fi
  echo "note: $CARBONMAP_REAL_DATA not found; real-data tests will be skipped" >&2
fi
cargo test --locked "$@"
