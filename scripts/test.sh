#!/usr/bin/env bash
# Set up (the venv, Chromium for the UI test, PostgreSQL for the database tests), then run the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_browser.sh
bash scripts/setup_postgres.sh
# Two workers, each test file on one of them (its module fixtures, e.g. a started server, stay shared):
# most slow tests wait on subprocesses and servers, so two overlap well even on two cores.
# ADRAG_TEST_WORKERS=0 runs in this process; a later -n in the arguments wins.
exec .venv/bin/python -m pytest -n "${ADRAG_TEST_WORKERS:-2}" --dist loadfile "$@"
