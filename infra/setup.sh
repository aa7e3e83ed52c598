#!/usr/bin/env bash
# Installs everything Quorum needs, idempotently, on a Debian machine:
#   - Debian's PostgreSQL server binaries (no system service is used; see infra/devstack.py),
#   - Debian's Chromium, for the browser tests of the annotation and review pages,
#   - a virtualenv in .venv with Quorum and its dev tools,
#   - the Temporal CLI (dev server) and MinIO, built from the Go module proxy into
#     ~/.cache/quorum/bin, outside the clone, so every clone and every CI run reuses them.
# A rerun does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
fail() { printf 'setup: %s\n' "$*" >&2; exit 1; }

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || fail "Quorum needs Python 3.11 or newer; set PYTHON=/path/to/python3.11 and rerun"
command -v go >/dev/null || fail "Go is needed to build the Temporal CLI and MinIO: install Go >= 1.24 (https://go.dev/dl) and rerun"

# --- Debian packages ---------------------------------------------------------------------------
missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  missing+=(postgresql)
fi
# The browser tests (tests/web) drive Debian's Chromium with Playwright.
if [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null; then
    say "installing Debian packages with sudo: ${missing[*]}"
    sudo apt-get update -q >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    fail "install these Debian packages, then rerun: apt-get install ${missing[*]}"
  fi
fi

# --- Python ------------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing Python packages into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Bytecode for the project's own modules. Temporal's workflow sandbox imports each workflow's
# module afresh for every workflow run; without a .pyc (PYTHONDONTWRITEBYTECODE=1, as on CI
# machines and in many images) that is a compile from source per run (1 to 2 ms per image in
# the pipeline). Python reads .pyc files even when it is told not to write them, and ignores
# one whose source has changed since.
.venv/bin/python -m compileall -q activities api cli db infra quality schemas services simulation \
  storage workers workflows

# --- Servers built from source -----------------------------------------------------------------
.venv/bin/python -m infra.devstack build >/dev/null
say "ready: Temporal, PostgreSQL and MinIO binaries in place; .venv up to date"
