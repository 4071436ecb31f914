"""Durations too large for any clock and malformed environment overrides are config errors: one
line naming the field, exit 2, never an internal error."""

import subprocess
import sys

import pytest

from sync import config
from sync.errors import ConfigError

from .conftest import write_config
from .test_config import load_error

HUGE = "99999999999d"


@pytest.mark.parametrize(
    "extra, key",
    [
        (f'[ca.other]\nsubject = "CN=Other"\nvalidity = "{HUGE}"\n', "ca.other.validity"),
        (f'[ca.other]\nsubject = "CN=Other"\ncrl_lifetime = "{HUGE}"\n', "ca.other.crl_lifetime"),
        (f'[profile.p]\nca = "issuing"\nvalidity = "{HUGE}"\n', "profile.p.validity"),
        (f'[profile.p]\nca = "issuing"\nrenew_before = "{HUGE}"\n', "profile.p.renew_before"),
        ('[profile.p]\nca = "issuing"\nvalidity = "36501d"\n', "profile.p.validity"),
        ('[profile.p]\nca = "issuing"\nvalidity = "' + "9" * 5000 + 'd"\n', "profile.p.validity"),
        (f'[store]\nlock_timeout = "{HUGE}"\n', "store.lock_timeout"),
        (f'[notify]\nexpiring_within = "{HUGE}"\n', "notify.expiring_within"),
        (
            f'[certificate.x]\nprofile = "tls-server"\ncommon_name = "x.example.internal"\nvalidity = "{HUGE}"\n',
            "certificate.x.validity",
        ),
    ],
)
def test_a_huge_duration_is_a_config_error(tmp_path, extra, key):
    message = load_error(tmp_path, extra)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{tmp_path / 'bad.toml'}: {key}: ") and "at most 36500d" in message, message


def test_the_largest_duration_is_accepted(tmp_path):
    cfg = config.load(write_config(tmp_path / "ok.toml", '[profile.p]\nca = "issuing"\nvalidity = "36500d"\n'))
    assert cfg.profile["p"].validity.days == 36500


@pytest.mark.parametrize(
    "env, field",
    [
        ({"CERTSYNC_STORE": "{"}, "store"),
        ({"CERTSYNC_CERTIFICATE__API__DNS_NAMES": "not json"}, "certificate"),
        ({"CERTSYNC_PROFILE": "[1, 2"}, "profile"),
    ],
)
def test_a_malformed_environment_override_is_a_config_error(tmp_path, monkeypatch, env, field):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        config.load(write_config(tmp_path / "c.toml"))
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert f": {field}: " in message and next(iter(env)) in message and "JSON" in message, message


def test_an_environment_override_of_a_huge_duration_names_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("CERTSYNC_CA__ROOT__VALIDITY", HUGE)
    message = load_error(tmp_path, "")
    assert len(message.splitlines()) == 1 and ": ca.root.validity: must be at most 36500d" in message, message


def _cli(tmp_path, *args, env=None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "sync", "--config", str(tmp_path / "sync.toml"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args, env, needle",
    [
        (["plan"], {"CERTSYNC_STORE": "{"}, ": store: "),
        (["plan"], {"CERTSYNC_CA__ROOT__VALIDITY": HUGE}, ": ca.root.validity: "),
        (["apply", "--max-duration", HUGE], {}, "--max-duration"),
        (["list", "--expiring", HUGE], {}, "--expiring"),
        (["list", "--expiring", "9" * 5000 + "d"], {}, "--expiring"),
    ],
)
def test_cli_exits_2_with_one_line(tmp_path, args, env, needle):
    write_config(tmp_path / "sync.toml")
    result = _cli(tmp_path, *args, env=env)
    assert result.returncode == 2, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert needle in result.stderr, result.stderr
    if not needle.startswith("--"):
        assert len(lines) == 1, result.stderr
