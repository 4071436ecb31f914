#!/usr/bin/env bash
# certsync's main job on the example config: venv, local cloud emulators (LocalStack for AWS, and the
# Google and Azure emulators), `certsync init`, `certsync apply`, `certsync list`, `certsync plan`,
# then every copy is read back from its cloud and checked with openssl.
# The store (certsync.db) and its master key (certsync.key) stay next to sync.example.toml.
# Emulators are stopped at the end; pass --keep to leave them running for your own commands.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_venv emulators
keep=false; [ "${1:-}" = "--keep" ] && keep=true
.venv/bin/python localstack/emulators.py install
state_dir=".emulators/demo"
$keep || trap '.venv/bin/python localstack/emulators.py --state-dir "$state_dir" stop' EXIT
.venv/bin/python localstack/emulators.py --state-dir "$state_dir" start --fixed-ports
eval "$(.venv/bin/python localstack/emulators.py --state-dir "$state_dir" env)"
export CERTSYNC_CONFIG=sync.example.toml
run() { echo; echo "\$ certsync $*"; .venv/bin/certsync "$@"; }
run init
run apply
run list
run plan
echo; echo "\$ read back from the clouds with their SDKs, checked with openssl verify"
.venv/bin/python scripts/readback.py sync.example.toml
if $keep; then
  echo; echo "Emulators left running. For your own commands:"
  echo "  eval \"\$(.venv/bin/python localstack/emulators.py --state-dir $state_dir env)\"; export CERTSYNC_CONFIG=sync.example.toml"
fi
