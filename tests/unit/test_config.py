"""Bad config: one line per problem naming the file, the key and the rule; exit 2; nothing written."""

import subprocess
import sys

import pytest

from sync import config
from sync.errors import ConfigError

from .conftest import write_config


def load_error(tmp_path, extra: str, base=None) -> str:
    path = write_config(tmp_path / "bad.toml", extra, **({"base": base} if base is not None else {}))
    with pytest.raises(ConfigError) as err:
        config.load(path)
    return str(err.value)


def test_example_config_is_valid():
    cfg = config.load("sync.example.toml")
    assert cfg.certificate and cfg.destination


@pytest.mark.parametrize(
    "extra, key, rule",
    [
        ("[store]\nbogus = 1\n", "store.bogus", "unknown key"),
        (
            '[certificate.x]\nprofile = "nope"\ncommon_name = "x.example.internal"\n',
            "certificate.x.profile",
            "unknown profile 'nope'",
        ),
        (
            '[certificate.x]\nprofile = "tls-server"\ncommon_name = "x.example.internal"\ndestinations = ["nowhere"]\n',
            "certificate.x.destinations[0]",
            "unknown destination 'nowhere'",
        ),
        (
            '[certificate.x]\nprofile = "tls-server"\ncommon_name = "x.example.internal"\nvalidity = "ninety days"\n',
            "certificate.x.validity",
            "positive duration like 90d",
        ),
        (
            '[certificate.x]\nprofile = "tls-server"\ncommon_name = "x.example.internal"\nvalidity = "20d"\n',
            "certificate.x.validity",
            "longer than the profile's renew_before",
        ),
        (
            '[profile.p]\nca = "issuing"\nvalidity = "30d"\nrenew_before = "30d"\n',
            "profile.p",
            "renew_before must be shorter than validity",
        ),
        ('[profile.p]\nca = "issuing"\nrenew_before = "120%"\n', "profile.p.renew_before", "percentage"),
        ('[profile.p]\nca = "missing"\n', "profile.p.ca", "unknown CA 'missing'"),
        (
            '[destination.az]\nprovider = "azure"\nvault_url = "https://v.vault.azure.net"\n'
            '[certificate.x]\nprofile = "tls-server"\ncommon_name = "x.example.internal"\n'
            'destinations = [{ to = "az", name = "bad_name" }]\n',
            "certificate.x.destinations[0]",
            "invalid for azure",
        ),
        (
            '[destination.a]\nprovider = "aws"\nrecovery_window_days = 3\n',
            "destination.a.recovery_window_days",
            "greater than or equal to 7",
        ),
        ('[destination.a]\nprovider = "ftp"\n', "destination.a", "provider"),
        ('[destination.a]\nprovider = "gcp"\n', "destination.a.project", "Field required"),
        (
            '[certificate.Bad_Name]\nprofile = "tls-server"\ncommon_name = "x.example.internal"\n',
            "certificate.Bad_Name",
            "lowercase",
        ),
        ('[ca.other]\nsubject = "not a dn"\n', "ca.other.subject", "RFC 4514"),
        (
            '[certificate.x]\nprofile = "tls-server"\nip_addresses = ["10.0.0.300"]\n',
            "certificate.x.ip_addresses",
            "not an IP address",
        ),
    ],
)
def test_bad_config_names_file_key_and_rule(tmp_path, extra, key, rule):
    message = load_error(tmp_path, extra)
    line = next(l for l in message.splitlines() if f": {key}" in l)
    assert line.startswith(str(tmp_path / "bad.toml") + ": ")
    assert rule in line


def test_every_problem_is_reported_on_its_own_line(tmp_path):
    message = load_error(tmp_path, '[store]\nbogus = 1\n[profile.p]\nca = "missing"\n')
    assert len(message.splitlines()) == 1  # field errors are reported before reference checks
    message = load_error(tmp_path, '[profile.p]\nca = "missing"\n[profile.q]\nca = "gone"\n')
    assert len(message.splitlines()) == 2


def test_not_toml(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text("[ca\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path)


def test_env_overrides_file(tmp_path, monkeypatch):
    path = write_config(tmp_path / "c.toml")
    monkeypatch.setenv("CERTSYNC_STORE__URL", "sqlite:///other.db")
    cfg = config.load(path)
    assert cfg.store_url() == f"sqlite:///{tmp_path}/other.db"


def test_renew_before_percentage(tmp_path):
    cfg = config.load(write_config(tmp_path / "c.toml", '[profile.p]\nca = "issuing"\nrenew_before = "33%"\n'))
    assert cfg.profile["p"].renew_before.fraction == 0.33 and cfg.profile["p"].renew_before.duration is None


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path):
    path = write_config(tmp_path / "bad.toml", "[store]\nbogus = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "sync", "--config", str(path), "init"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: {path}: store.bogus: unknown key"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


@pytest.mark.parametrize(
    "extra, key, rule",
    [
        (
            '[certificate.x]\nprofile = "tls-server"\ncommon_name = "' + "a" * 65 + '"\n',
            "certificate.x.common_name",
            "1-64 characters",
        ),
        (
            '[certificate.x]\nprofile = "tls-server"\ncommon_name = "My Service"\n',
            "certificate.x.common_name",
            "must be a DNS name or an IP address",
        ),
        (
            '[certificate.x]\nprofile = "tls-server"\ndns_names = ["ünï.example.internal"]\n',
            "certificate.x.dns_names",
            "xn-- A-labels",
        ),
        (
            '[destination.a]\nprovider = "aws"\n[certificate.x]\nprofile = "tls-server"\ncommon_name = "x.example.internal"\n'
            'destinations = [{ to = "a", name = "shared" }]\n[certificate.y]\nprofile = "tls-server"\n'
            'common_name = "y.example.internal"\ndestinations = [{ to = "a", name = "shared" }]\n',
            "certificate.y.destinations[0]",
            "already the target of certificate 'x'",
        ),
        # two destinations reaching the same store (same region and endpoint): the same secret
        (
            '[destination.a]\nprovider = "aws"\nregion = "eu-west-1"\n[destination.b]\nprovider = "aws"\n'
            'region = "eu-west-1"\nformat = "pem"\n[certificate.x]\nprofile = "tls-server"\n'
            'common_name = "x.example.internal"\ndestinations = [{ to = "a", name = "shared" }]\n'
            '[certificate.y]\nprofile = "tls-server"\ncommon_name = "y.example.internal"\n'
            'destinations = [{ to = "b", name = "shared" }]\n',
            "certificate.y.destinations[0]",
            "secret 'shared' in destination 'b' is already the target of certificate 'x' (destination 'a' is the same store)",
        ),
        # Key Vault names are case-insensitive
        (
            '[destination.kv]\nprovider = "azure"\nvault_url = "https://v.vault.azure.net"\n[certificate.x]\n'
            'profile = "tls-server"\ncommon_name = "x.example.internal"\ndestinations = [{ to = "kv", name = "Api" }]\n'
            '[certificate.y]\nprofile = "tls-server"\ncommon_name = "y.example.internal"\n'
            'destinations = [{ to = "kv", name = "api" }]\n',
            "certificate.y.destinations[0]",
            "already the target of certificate 'x'",
        ),
    ],
)
def test_names_that_would_break_issuance_or_collide(tmp_path, extra, key, rule):
    message = load_error(tmp_path, extra)
    line = next(l for l in message.splitlines() if f": {key}" in l)
    assert rule in line
