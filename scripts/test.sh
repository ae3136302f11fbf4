#!/usr/bin/env bash
# Set up (the venv, Chromium for the UI test, PostgreSQL for the database tests), then run the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_browser.sh
bash scripts/setup_postgres.sh
exec .venv/bin/python -m pytest "$@"
