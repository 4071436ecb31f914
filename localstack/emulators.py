#!/usr/bin/env python3
"""Run certsync's cloud emulators on the host, without Docker.

    python localstack/emulators.py install                 # LocalStack's own Python 3.13 venv, once
    python localstack/emulators.py start [aws gcp azure drongo] [--fixed-ports] [--state-dir DIR]
    eval "$(python localstack/emulators.py env)"           # endpoints for the SDKs, tests and demo
    python localstack/emulators.py status
    python localstack/emulators.py stop [NAME ...]

`start` with no names starts aws, gcp and azure, skipping (with a message) those that cannot run
here yet; `drongo` (a third-party Google Secret Manager REST emulator) starts only when named.
Each emulator gets a free port (unless --fixed-ports), runs in its own process group with cwd
and logs under the state dir, and is recorded in <state-dir>/state.json; `start` reuses the ones
that are still alive, so it is idempotent and safe to call from several processes at once.

This file is a script, not a module of a package: a package named `localstack` in this repo would
shadow LocalStack's own. It needs only the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_STATE_DIR = REPO / ".emulators"
STATE_FILE = "state.json"
HOST = "127.0.0.1"

LOCALSTACK_VERSION = "2026.3.0"
LOCALSTACK_PYTHON = "3.13.0"
# Exact pins from /work/shared/notes/emulators.md: without them LocalStack breaks at start.
LOCALSTACK_PINS = (
    f"localstack-core[runtime]=={LOCALSTACK_VERSION}",
    "cbor2<6",
    "pyOpenSSL==25.3.0",
    "cryptography>=45.0.7,<47",
    "service_identity",
)
INSTALL_MARKER = ".certsync-install-complete"


class LauncherError(Exception):
    """A one-line failure for the user; the script exits 1."""


# --- small helpers ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str) -> dict | None:
    try:
        with _NO_PROXY.open(url, timeout=1) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def _proc_start_time(pid: int) -> str | None:
    """Kernel start time of `pid` (guards against a recycled pid); None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def _pid_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    now = _proc_start_time(pid)
    if Path("/proc").is_dir():
        return now is not None and (started is None or now == started)
    return True


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment minus anything tying a child to the project venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "__PYVENV_LAUNCHER__")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on `path` for the duration of the block (across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- LocalStack (AWS) ---------------------------------------------------------------------------


def localstack_venv() -> Path:
    if os.environ.get("CERTSYNC_LOCALSTACK_VENV"):
        return Path(os.environ["CERTSYNC_LOCALSTACK_VENV"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "certsync" / f"localstack-{LOCALSTACK_VERSION}"


def _marker_text() -> str:
    return json.dumps({"version": LOCALSTACK_VERSION, "pins": LOCALSTACK_PINS})


def _localstack_installed(venv: Path) -> bool:
    marker = venv / INSTALL_MARKER
    return marker.is_file() and marker.read_text() == _marker_text()


def _find_python313() -> str:
    try:
        out = subprocess.run(
            ["pyenv", "which", "python3.13"],
            capture_output=True,
            text=True,
            env=os.environ | {"PYENV_VERSION": LOCALSTACK_PYTHON},
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except FileNotFoundError:
        pass
    found = shutil.which("python3.13")
    if found:
        return found
    raise LauncherError(
        f"python3.13 not found (LocalStack {LOCALSTACK_VERSION} needs it): "
        f"install it with `pyenv install {LOCALSTACK_PYTHON}`"
    )


def install_localstack(venv: Path) -> str:
    with _locked(venv.with_name(venv.name + ".lock")):
        if _localstack_installed(venv):
            return f"LocalStack {LOCALSTACK_VERSION} already installed in {venv}"
        python = _find_python313()
        steps = [
            [python, "-m", "venv", "--clear", str(venv)],
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *LOCALSTACK_PINS,
            ],
        ]
        for step in steps:
            if subprocess.run(step).returncode != 0:
                raise LauncherError(f"LocalStack install failed at: {shlex.join(step)}")
        (venv / INSTALL_MARKER).write_text(_marker_text())
        return f"installed LocalStack {LOCALSTACK_VERSION} into {venv}"


def _localstack_missing() -> str | None:
    venv = localstack_venv()
    if not _localstack_installed(venv):
        return f"LocalStack is not installed in {venv}; run: python {Path(__file__).relative_to(REPO)} install"
    return None


# Secrets Manager for the aws destinations, ACM for aws-acm ones (both in the free edition).
LOCALSTACK_SERVICES = ("secretsmanager", "acm")


def _localstack_argv(port: int, workdir: Path) -> list[str]:
    return [str(localstack_venv() / "bin" / "python"), "-m", "localstack.runtime.main"]


def _localstack_env(port: int, workdir: Path) -> dict[str, str]:
    return {
        "SERVICES": ",".join(LOCALSTACK_SERVICES),
        "GATEWAY_LISTEN": f"{HOST}:{port}",
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "EAGER_SERVICE_LOADING": "1",
        "LOCALSTACK_VOLUME_DIR": str(workdir / "volume"),
        "CONFIG_DIR": str(workdir / "config"),
        # host mode keeps its tree under FILESYSTEM_ROOT (default: inside the shared venv) and
        # its state under tempfile.gettempdir()/localstack: keep both per run (TMP, since
        # LocalStack warns that TMPDIR is deprecated as its own setting).
        "FILESYSTEM_ROOT": str(workdir / "filesystem"),
        "TMP": str(_mkdir(workdir / "tmp")),
    }


def _localstack_ready(port: int, workdir: Path) -> bool:
    health = _get_json(f"http://{HOST}:{port}/_localstack/health") or {}
    services = health.get("services", {})
    return (
        all(services.get(name) in ("running", "available") for name in LOCALSTACK_SERVICES)
        and services.get("secretsmanager") == "running"
    )


def _aws_exports(entry: dict) -> dict[str, str]:
    return {
        "CERTSYNC_AWS_ENDPOINT": entry["endpoint"],
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": entry["endpoint"],
        "AWS_ENDPOINT_URL_ACM": entry["endpoint"],
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


# --- the other emulators ------------------------------------------------------------------------


def _script_missing(script: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        return None if (HERE / script).is_file() else f"localstack/{script} does not exist yet"

    return missing


def _azure_ca_bundle(workdir: Path) -> Path | None:
    preferred = workdir / "ca.pem"
    if preferred.is_file():
        return preferred
    return next(iter(sorted(workdir.glob("*.pem"))), None)


def _azure_exports(entry: dict) -> dict[str, str]:
    return {
        "CERTSYNC_AZURE_VAULT_URL": entry["endpoint"],
        "CERTSYNC_AZURE_CA_BUNDLE": entry.get("ca_bundle") or "",
        "IDENTITY_ENDPOINT": f"{entry['endpoint']}/msi/token",
        "IDENTITY_HEADER": "certsync-emulator",
        # DefaultAzureCredential's managed-identity call must trust the emulator's CA too.
        # Note: this replaces the system CAs for every `requests` user in that shell.
        "REQUESTS_CA_BUNDLE": entry.get("ca_bundle") or "",
    }


# drongo's own server with Nagle off: otherwise every call costs ~44 ms (delayed ACK).
_DRONGO_BOOT = """\
import sys
from drongo import server
server.DrongoHTTPRequestHandler.disable_nagle_algorithm = True
server.run(host=sys.argv[1], port=int(sys.argv[2]))
"""


@dataclass(frozen=True)
class Emulator:
    """How to start one emulator, tell that it is ready, and point clients at it."""

    fixed_port: int
    argv: Callable[[int, Path], list[str]]  # (port, workdir) -> command line
    ready: Callable[[int, Path], bool]  # (port, workdir) -> serving?
    endpoint: Callable[[int], str]
    exports: Callable[[dict], dict[str, str]]  # state entry -> env for clients
    env: Callable[[int, Path], dict[str, str]] = lambda port, workdir: {}
    extra: Callable[[int, Path], dict] = lambda port, workdir: {}  # more state fields
    missing: Callable[[], str | None] = lambda: None  # why it cannot run here, or None
    timeout: float = 60.0


EMULATORS: dict[str, Emulator] = {
    "aws": Emulator(
        fixed_port=4566,
        argv=_localstack_argv,
        env=_localstack_env,
        ready=_localstack_ready,
        endpoint=lambda port: f"http://{HOST}:{port}",
        exports=_aws_exports,
        missing=_localstack_missing,
    ),
    "gcp": Emulator(
        fixed_port=8085,
        argv=lambda port, wd: [sys.executable, str(HERE / "gcp_emulator.py"), "--port", str(port)],
        ready=lambda port, wd: _tcp_open(port),
        endpoint=lambda port: f"{HOST}:{port}",
        exports=lambda entry: {"CERTSYNC_GCP_ENDPOINT": entry["endpoint"]},
        missing=_script_missing("gcp_emulator.py"),
    ),
    "azure": Emulator(
        fixed_port=8443,
        argv=lambda port, wd: [
            sys.executable,
            str(HERE / "azure_emulator.py"),
            "--port",
            str(port),
            "--state-dir",
            str(wd),
        ],
        ready=lambda port, wd: _tcp_open(port) and _azure_ca_bundle(wd) is not None,
        endpoint=lambda port: f"https://{HOST}:{port}",
        extra=lambda port, wd: {"ca_bundle": str(_azure_ca_bundle(wd))},
        exports=_azure_exports,
        missing=_script_missing("azure_emulator.py"),
    ),
    "drongo": Emulator(
        fixed_port=9090,
        argv=lambda port, wd: [sys.executable, "-c", _DRONGO_BOOT, HOST, str(port)],
        ready=lambda port, wd: (_get_json(f"http://{HOST}:{port}/drongo/health") or {}).get("status") == "ok",
        endpoint=lambda port: f"http://{HOST}:{port}",
        exports=lambda entry: {"CERTSYNC_DRONGO_ENDPOINT": entry["endpoint"]},
    ),
}
DEFAULT_START = ("aws", "gcp", "azure")


# --- state file ---------------------------------------------------------------------------------


def _read_state(state_dir: Path) -> dict:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return {"emulators": {}}
    except ValueError as exc:
        raise LauncherError(f"corrupt state file {state_dir / STATE_FILE}: {exc}") from None


def _write_state(state_dir: Path, state: dict) -> None:
    path = state_dir / STATE_FILE
    if not state["emulators"]:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _is_running(name: str, entry: dict) -> bool:
    return _pid_alive(entry["pid"], entry.get("started")) and EMULATORS[name].ready(
        entry["port"], Path(entry["workdir"])
    )


# --- start / stop -------------------------------------------------------------------------------


def _launch(name: str, state_dir: Path, fixed_ports: bool) -> dict:
    emu = EMULATORS[name]
    workdir = state_dir / name
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"{name}.log"
    port = emu.fixed_port if fixed_ports else _free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            emu.argv(port, workdir),
            cwd=workdir,
            env=_child_env(emu.env(port, workdir)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + emu.timeout
    while not emu.ready(port, workdir):
        problem = None
        if proc.poll() is not None:
            problem = f"exited with code {proc.returncode} before it was ready"
        elif time.monotonic() > deadline:
            _terminate(proc.pid, None)
            problem = f"was not ready after {emu.timeout:.0f} s"
        if problem:
            print(_tail(log_path), file=sys.stderr)
            raise LauncherError(f"{name} emulator {problem} (port {port}); log: {log_path}")
        time.sleep(0.1)
    extra = emu.extra(port, workdir)  # noqa: S610  (not Django's QuerySet.extra)
    return {
        "pid": proc.pid,
        "started": _proc_start_time(proc.pid),
        "port": port,
        "endpoint": emu.endpoint(port),
        "log": str(log_path),
        "workdir": str(workdir),
        **extra,
    }


def _terminate(pid: int, started: str | None, timeout: float = 10.0) -> None:
    """SIGTERM the emulator's process group, then SIGKILL it if it outlives `timeout`."""
    if not _pid_alive(pid, started):
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
            if not _pid_alive(pid, started):
                return
            time.sleep(0.05)


def start(names: list[str], state_dir: Path, fixed_ports: bool) -> dict:
    explicit = bool(names)
    with _locked(state_dir / ".lock"):
        state = _read_state(state_dir)
        state["state_dir"] = str(state_dir)
        for name in names or DEFAULT_START:
            entry = state["emulators"].get(name)
            if entry and _is_running(name, entry):
                print(f"{name}: already running at {entry['endpoint']} (pid {entry['pid']})", file=sys.stderr)
                continue
            reason = EMULATORS[name].missing()
            if reason:
                if explicit:
                    raise LauncherError(f"cannot start {name}: {reason}")
                print(f"{name}: skipped, {reason}", file=sys.stderr)
                continue
            if entry:
                _terminate(entry["pid"], entry.get("started"))
            state["emulators"][name] = _launch(name, state_dir, fixed_ports)
            _write_state(state_dir, state)
            entry = state["emulators"][name]
            print(f"{name}: started at {entry['endpoint']} (pid {entry['pid']})", file=sys.stderr)
        return state


def stop(names: list[str], state_dir: Path) -> None:
    with _locked(state_dir / ".lock"):
        state = _read_state(state_dir)
        for name in names or list(state["emulators"]):
            entry = state["emulators"].pop(name, None)
            if entry:
                _terminate(entry["pid"], entry.get("started"))
                print(f"{name}: stopped", file=sys.stderr)
        _write_state(state_dir, state)


def exports(state_dir: Path) -> dict[str, str]:
    state = _read_state(state_dir)
    if not state["emulators"]:
        raise LauncherError(f"no emulators recorded in {state_dir / STATE_FILE}; run start first")
    env = {"CERTSYNC_EMULATORS_STATE": str(state_dir / STATE_FILE)}
    for name, entry in sorted(state["emulators"].items()):
        env |= EMULATORS[name].exports(entry)
    return env


# --- command line -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run certsync's cloud emulators on the host.")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where state.json, logs and emulator data live (default: {DEFAULT_STATE_DIR})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "install",
        help="install LocalStack into its own Python 3.13 venv "
        "(CERTSYNC_LOCALSTACK_VENV, default ~/.cache/certsync/...)",
    )
    p_start = sub.add_parser(
        "start", help="start emulators (default: aws gcp azure) and wait until they are ready; reuses running ones"
    )
    p_start.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(EMULATORS)}")
    p_start.add_argument(
        "--fixed-ports",
        action="store_true",
        help="use the well-known ports ("
        + ", ".join(f"{n} {e.fixed_port}" for n, e in EMULATORS.items())
        + ") instead of free ones",
    )
    p_stop = sub.add_parser("stop", help="stop emulators (default: all) and forget them")
    p_stop.add_argument("names", nargs="*", metavar="NAME")
    sub.add_parser("env", help="print `export` lines for the running emulators")
    sub.add_parser("status", help="print each recorded emulator and whether it is running")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [n for n in getattr(args, "names", []) if n not in EMULATORS]
    if unknown:
        parser.error(f"unknown emulator {unknown[0]!r} (known: {', '.join(EMULATORS)})")
    state_dir = args.state_dir.resolve()
    try:
        if args.command == "install":
            print(install_localstack(localstack_venv()))
        elif args.command == "start":
            start(list(dict.fromkeys(args.names)), state_dir, args.fixed_ports)
            print(state_dir / STATE_FILE)
        elif args.command == "stop":
            stop(args.names, state_dir)
        elif args.command == "env":
            for key, value in exports(state_dir).items():
                print(f"export {key}={shlex.quote(value)}")
        elif args.command == "status":
            for name, entry in sorted(_read_state(state_dir)["emulators"].items()):
                up = "running" if _is_running(name, entry) else "DEAD"
                print(f"{name:7} {up:8} pid {entry['pid']:<8} {entry['endpoint']}")
    except LauncherError as exc:
        print(f"emulators: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
