#!/usr/bin/env bash
# The quick checks (seconds, no emulator): lint, format, types. scripts/test.sh runs them first and
# .pre-commit-config.yaml runs the same tools. All three run; the exit code is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${CERTSYNC_TOOLS:-.venv/bin}"      # where ruff and mypy are (the test extra installs them)
failed=()
check() {
  echo "==> $*"
  "$bin/$1" "${@:2}" || failed+=("$1 ${2:-}")
}
check ruff check --output-format concise --quiet .
check ruff format --check --output-format concise --quiet .
check mypy
if [ ${#failed[@]} -gt 0 ]; then
  echo "error: checks failed: ${failed[*]} (fix them, or run \`ruff check --fix . && ruff format .\` for lint/format)" >&2
  exit 1
fi
