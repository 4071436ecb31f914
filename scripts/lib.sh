# Shared by the README's two commands: make the project venv and keep it in step with pyproject.toml.
# Sourced, not run. Needs Python >= 3.11 as python3 (or $PYTHON).

ensure_venv() {
  local extras="$1"
  local python="${PYTHON:-python3}"
  local marker=".venv/.certsync-installed"
  local want
  want="$extras $(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($python --version)"
    "$python" -m venv .venv
  fi
  if [ "$(cat "$marker" 2>/dev/null)" != "$want" ]; then
    echo "==> installing certsync[$extras] into .venv"
    if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e ".[$extras]"; } \
        > .venv/pip.log 2>&1; then
      tail -n 30 .venv/pip.log >&2
      echo "error: installing certsync[$extras] failed; full log in .venv/pip.log" >&2
      return 1
    fi
    echo "$want" > "$marker"
  fi
}
