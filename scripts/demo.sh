#!/usr/bin/env bash
# Set up, then run the demo end to end. Extra arguments go to `adrag` (e.g. --offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/adrag "$@" demo
