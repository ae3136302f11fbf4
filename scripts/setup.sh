#!/usr/bin/env bash
# Create .venv and install the project with its test dependencies (idempotent). No browser: the UI
# test's Chromium is scripts/setup_browser.sh's job, which only scripts/test.sh runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
