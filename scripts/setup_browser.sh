#!/usr/bin/env bash
# Make sure Debian's Chromium is there for the UI test (tests/test_ui.py drives it headless with
# Playwright). Only scripts/test.sh runs this: the demo never needs a browser.
set -euo pipefail

# The browser comes from the OS packages, not from `playwright install` (which downloads its own).
# ADRAG_CHROMIUM may name another Chromium executable instead.
chromium="${ADRAG_CHROMIUM:-chromium}"
if command -v "$chromium" >/dev/null 2>&1; then
  exit 0
fi
if [ -n "${ADRAG_CHROMIUM:-}" ]; then
  echo "setup: ADRAG_CHROMIUM=$ADRAG_CHROMIUM is not an executable" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
fi
if ! command -v apt-get >/dev/null 2>&1 || { [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; }; then
  echo "setup: the UI test needs Chromium and it is not installed; install Debian's 'chromium' package" \
       "(apt-get install -y chromium, as root) or set ADRAG_CHROMIUM to a Chromium executable" >&2
  exit 1
fi
echo "setup: installing Debian's chromium for the UI test (apt-get)" >&2
if ! { $sudo apt-get update -qq \
       && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null; }; then
  echo "setup: could not install chromium with apt-get; install Debian's 'chromium' package" \
       "or set ADRAG_CHROMIUM to a Chromium executable" >&2
  exit 1
fi
command -v chromium >/dev/null 2>&1 || { echo "setup: apt-get installed chromium but it is not on PATH" >&2; exit 1; }
