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

# apt-get install the Debian packages named (as root, or through sudo); on failure, the log's tail
# and one line naming them.
ensure_debian_packages() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing $* (apt-get)"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"; } \
      > .venv/apt.log 2>&1; then
    tail -n 20 .venv/apt.log >&2
    echo "error: installing $* failed (log: .venv/apt.log); install them with apt-get" >&2
    exit 1
  fi
}
