"""Fixtures shared by every test suite: the cloud emulators and unique names.

Emulators come from one of two places:

* `CERTSYNC_EMULATORS_STATE` names a state file written by `localstack/emulators.py start`
  (a runner started them, e.g. `eval "$(python localstack/emulators.py env)"` sets it). Tests use
  what is recorded there and leave it running.
* Otherwise the first test that needs an emulator starts it with the launcher, into a temporary
  state dir that the pytest process (the xdist controller, when there is one) creates before any
  worker exists; workers inherit its path. The launcher holds a file lock while starting and
  reuses live processes, so parallel workers end up sharing one emulator per kind. The
  controller stops them all when the run ends.

LocalStack has no reset: tests isolate themselves with `name_prefix` instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = REPO / "localstack" / "emulators.py"
STATE_ENV = "CERTSYNC_EMULATORS_STATE"
AUTO_DIR_ENV = "CERTSYNC_TEST_EMULATORS_DIR"  # private; set by the controller for its workers


def _launcher():
    """The launcher script loaded as a module (it is not importable by name on purpose)."""
    name = "certsync_emulators_launcher"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, LAUNCHER)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(STATE_ENV) or hasattr(config, "workerinput"):
        return
    config._certsync_emulators_dir = tempfile.mkdtemp(prefix="certsync-emulators-")
    os.environ[AUTO_DIR_ENV] = config._certsync_emulators_dir


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = getattr(config, "_certsync_emulators_dir", None)
    if directory:
        _launcher().stop([], Path(directory))
        shutil.rmtree(directory, ignore_errors=True)
        os.environ.pop(AUTO_DIR_ENV, None)


class Emulators:
    """Emulator endpoints by kind: `emulators.entry("aws")["endpoint"]`."""

    def __init__(self, state_file: Path, manage: bool) -> None:
        self.state_file = state_file
        self.manage = manage  # True: start on demand through the launcher
        self._started: set[str] = set()

    def entry(self, kind: str) -> dict:
        """The state entry (pid, port, endpoint, ...) of a running emulator, starting it if ours."""
        if self.manage and kind not in self._started:
            launcher = _launcher()
            try:
                launcher.start([kind], self.state_file.parent, fixed_ports=False)
            except launcher.LauncherError as exc:
                pytest.fail(f"could not start the {kind} emulator: {exc}")
            self._started.add(kind)
        try:
            entries = json.loads(self.state_file.read_text())["emulators"]
        except FileNotFoundError:
            entries = {}
        if kind not in entries:
            pytest.fail(f"no {kind} emulator recorded in {self.state_file}")
        return entries[kind]


@pytest.fixture(scope="session")
def emulators() -> Emulators:
    if os.environ.get(STATE_ENV):
        return Emulators(Path(os.environ[STATE_ENV]), manage=False)
    if not os.environ.get(AUTO_DIR_ENV):
        pytest.fail(f"set {STATE_ENV} or let tests/conftest.py create {AUTO_DIR_ENV}")
    return Emulators(Path(os.environ[AUTO_DIR_ENV]) / "state.json", manage=True)


@pytest.fixture
def name_prefix() -> str:
    """A prefix unique to this test, valid in every provider's names (letters, digits, '-')."""
    return f"cs-{uuid.uuid4().hex[:12]}"
