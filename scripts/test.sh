#!/usr/bin/env bash
# Set up (the venv, and Chromium for the UI test), then run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_browser.sh
exec .venv/bin/python -m pytest "$@"
