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
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[$extras]"
    echo "$want" > "$marker"
  fi
}
