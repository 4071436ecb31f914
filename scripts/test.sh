#!/usr/bin/env bash
# The whole test suite, from a fresh clone: venv, LocalStack's own venv, every emulator started
# on free ports, pytest, and the emulators stopped again. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_venv test
.venv/bin/python localstack/emulators.py install
state_dir="$(mktemp -d -t certsync-emulators-XXXXXX)"
cleanup() { .venv/bin/python localstack/emulators.py --state-dir "$state_dir" stop || true; rm -rf "$state_dir"; }
trap cleanup EXIT
.venv/bin/python localstack/emulators.py --state-dir "$state_dir" start aws gcp azure drongo
export CERTSYNC_EMULATORS_STATE="$state_dir/state.json"
.venv/bin/python -m pytest -n 2 "$@"
