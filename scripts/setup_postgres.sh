#!/usr/bin/env bash
# Make sure PostgreSQL's server programs are there for the PostgreSQL tests: tests/postgres_server.py
# starts a throwaway cluster of its own (initdb, pg_ctl) and stops it at the end. Only scripts/test.sh
# runs this: the demo and the embedded defaults never need PostgreSQL.
set -euo pipefail

# Debian keeps the server programs in /usr/lib/postgresql/<version>/bin, off PATH.
have_initdb() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
if have_initdb; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
fi
if ! command -v apt-get >/dev/null 2>&1 || { [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; }; then
  echo "setup: the PostgreSQL tests need PostgreSQL's server (initdb) and it is not installed; install Debian's" \
       "'postgresql' package (apt-get install -y postgresql, as root) or put its bin folder on PATH" >&2
  exit 1
fi
echo "setup: installing Debian's postgresql for the PostgreSQL tests (apt-get)" >&2
if ! { $sudo apt-get update -qq \
       && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }; then
  echo "setup: could not install postgresql with apt-get; install Debian's 'postgresql' package" >&2
  exit 1
fi
have_initdb || { echo "setup: apt-get installed postgresql but no initdb is in /usr/lib/postgresql/*/bin" >&2; exit 1; }
