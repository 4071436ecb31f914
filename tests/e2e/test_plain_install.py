"""certsync as a user installs it: `pip install <checkout>` with no extras, into a fresh venv, then
that venv's `certsync` pushes one certificate to all three clouds (the emulators), read back here
with the official SDKs. Catches a runtime import that only an extra (emulators, test) provides.

The venv is cached under .venv/plain-install and rebuilt (a full `pip install`, dependencies
resolved from scratch) when pyproject.toml or the Python running the tests changes; when only the
code changed, certsync alone is reinstalled (--no-deps). The install needs a package index (or
pip's cache); a failed install fails the test.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from tests.e2e.clouds import Cloud
from tests.e2e.conftest import AWS_ENV, CA_AND_PROFILE
from tests.e2e.test_clouds_e2e import FORMATS, materials

VENV = REPO / ".venv" / "plain-install"
# Not copied into the source tree that pip builds from: VCS data, venvs, build output, caches.
SKIP = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    "*.pyc",
    "build",
    "dist",
    "*.egg-info",
    ".pytest_cache",
    ".emulators",
    "*.db",
    "certsync.key",
)

pytestmark = pytest.mark.install


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# pip must trust the package index as this machine does, not an emulator's CA that a test set for the SDKs.
PIP_ENV = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")}


def _run(*cmd, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="session")
def plain_install(tmp_path_factory) -> Path:
    """The bin/ folder of a venv holding `pip install <this checkout>`, no extras, no editable."""
    # Build from a copy: pip builds a local directory in place, leaving build/ and *.egg-info behind.
    source = tmp_path_factory.mktemp("certsync-source") / "certsync"
    shutil.copytree(REPO, source, ignore=SKIP)
    deps_key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()[:16]
    code_key = _digest(source)
    pip = [VENV / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    VENV.parent.mkdir(exist_ok=True)
    with open(VENV.parent / "plain-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest run building the same venv
        marker = VENV / "certsync-keys"
        keys = marker.read_text().split() if marker.exists() else []
        if keys[:1] != [deps_key]:
            shutil.rmtree(VENV, ignore_errors=True)
            _run(sys.executable, "-m", "venv", VENV, env=PIP_ENV)
            _run(*pip, source, env=PIP_ENV)
        elif keys[1:] != [code_key]:
            _run(*pip, "--no-deps", "--force-reinstall", source, env=PIP_ENV)
        marker.write_text(f"{deps_key} {code_key}\n")
    return VENV / "bin"


def test_plain_install_pushes_to_every_cloud(plain_install, emulators, name_prefix, tmp_path):
    clouds = {kind: Cloud(kind, emulators.entry(kind), project=name_prefix) for kind in FORMATS}
    cert = f"{name_prefix}-api"
    (tmp_path / "sync.toml").write_text(
        textwrap.dedent(CA_AND_PROFILE)
        + "".join(cloud.destination(kind, FORMATS[kind]) for kind, cloud in clouds.items())
        + f"""
[certificate.{cert}]
profile = "tls-server"
common_name = "api.example.internal"
dns_names = ["api.example.internal"]
destinations = {json.dumps(list(clouds))}
"""
    )
    # Nothing from this checkout or the test venv: the installed copy only.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CERTSYNC_", "PYTHON", "VIRTUAL_ENV")) and k != "PATH"
    }
    env.update(AWS_ENV, PATH=f"{plain_install}{os.pathsep}{os.environ.get('PATH', '')}")
    for cloud in clouds.values():
        env.update(cloud.env())

    where = _run(
        plain_install / "python",
        "-c",
        "import sync, providers; print(sync.__file__, providers.__file__)",
        cwd=tmp_path,
        env=env,
    ).stdout.split()
    assert len(where) == 2 and all(Path(f).is_relative_to(VENV) for f in where), where  # not the checkout

    def certsync(command: str) -> str:
        result = subprocess.run(
            [plain_install / "certsync", command], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
        )
        assert result.returncode == 0, f"certsync {command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        return result.stdout

    certsync("init")
    certsync("apply")
    families = {f.name: f for f in text_string_to_metric_families(certsync("metrics"))}
    in_sync = families["certsync_destination_in_sync"]
    assert {(s.labels["destination"], s.value) for s in in_sync.samples} == {(kind, 1) for kind in FORMATS}

    serials = set()
    for kind, cloud in clouds.items():
        payload = cloud.read(cert)
        assert payload, f"{kind}: no secret {cert}"
        leaf, chain, key = materials(cloud, payload, FORMATS[kind])
        assert key.public_key() == leaf.public_key()
        assert [c.subject for c in chain] == [leaf.issuer]
        serials.add(leaf.serial_number)
    assert len(serials) == 1  # one certificate, the same in every cloud
