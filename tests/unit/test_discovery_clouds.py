"""Cloud discovery without an emulator (tests/support/memory.py, the in-memory provider that runs
the provider contract): read pacing, per-secret errors, what is marked gone, destination choice."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, UTC

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from providers.base import RemoteSecret
from sync import config as config_mod
from sync.app import App
from sync.discovery import clouds
from sync.errors import ConfigError, ProviderError, UsageError
from sync.reconcile.pacing import read_quota_of
from tests.support.memory import MemoryCloud, MemoryProvider
from tests.unit.conftest import write_config

DESTS = """
[destination.one]
provider = "aws"
region = "us-east-1"

[destination.two]
provider = "aws"
region = "eu-west-1"
"""


def pem_certificate(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def seed(cloud: MemoryCloud, secrets: dict[str, str]) -> None:
    for name, value in secrets.items():
        cloud[name] = RemoteSecret(name, labels={"team": "x"}, version=str(next(cloud.versions)), value=value)


class Flaky(MemoryProvider):
    """Reading a name in `cloud.unreadable` fails (a throttled or forbidden read)."""

    def get(self, name):
        if name in getattr(self.cloud, "unreadable", ()):
            raise ProviderError(f"destination 'one': cannot read {name!r}: HTTP 403 Forbidden")
        return super().get(name)


@pytest.fixture
def app(workdir, master_key_env):
    clouds_ = {"one": MemoryCloud(), "two": MemoryCloud()}
    write_config(workdir / "sync.toml", DESTS + "\n[discovery.clouds]\nmax_reads_per_second = 40\n")
    config = config_mod.load(workdir / "sync.toml")
    with App(config, providers=lambda d: Flaky(clouds_[d], destination=d)) as app:
        app.init()
        app.clouds = clouds_
        yield app


def test_reads_are_paced_under_the_read_budget(app):
    seed(app.clouds["one"], {f"c{i}": pem_certificate(f"c{i}.example.internal") for i in range(12)})
    started = time.monotonic()
    result = app.discover_clouds(["one"])
    elapsed = time.monotonic() - started
    assert len(result.found) == 12
    # one listing page + 12 reads (AWS: 2 calls each) = 25 tokens at 40/s, the first one free
    assert elapsed >= 24 / 40 * 0.9


def test_default_read_budgets_per_cloud():
    gcp = config_mod.from_dict({"destination": {"g": {"provider": "gcp", "project": "p"}}}).destination["g"]
    quota = read_quota_of(gcp)
    assert quota.reads_per_second == pytest.approx(600 / 60 * 0.95) and quota.domain == "gcp::p"
    assert read_quota_of(gcp, 3.0).reads_per_second == 3.0


def test_an_unreadable_secret_is_reported_and_not_marked_gone(app):
    cloud = app.clouds["one"]
    seed(
        cloud,
        {
            "broken": pem_certificate("b.example.internal"),
            "fine": pem_certificate("f.example.internal"),
            "gone": pem_certificate("g.example.internal"),
            "password": "hunter2-hunter2",
        },
    )
    cloud.unreadable = {"broken"}
    first = app.discover_clouds(["one"])
    assert [f["location"] for f in first.found] == ["aws:one/fine", "aws:one/gone"]
    assert first.errors == ["aws:one/broken: destination 'one': cannot read 'broken': HTTP 403 Forbidden"]
    assert first.destinations[0].without_certificate == 1

    # "fine" becomes unreadable too: its location stays; a deleted secret's is gone
    del cloud["gone"]
    cloud.unreadable = {"broken", "fine"}
    again = app.discover_clouds(["one"])
    assert again.summary.locations_gone == 1 and len(again.errors) == 2
    with app.store.transaction() as tx:
        locations = {loc.location: loc.gone_since for f in tx.discovery.found(include_gone=True) for loc in f.locations}
    assert locations["aws:one/fine"] is None and locations["aws:one/gone"] is not None


def test_destination_choice(app):
    assert clouds.chosen_destinations(app.config, None) == ["one", "two"]
    assert clouds.chosen_destinations(app.config, ["two", "two"]) == ["two"]
    with pytest.raises(UsageError, match="unknown destination 'nope'"):
        clouds.chosen_destinations(app.config, ["nope"])
    with pytest.raises(ConfigError, match="discovery.clouds.destinations"):
        config_mod.from_dict({"discovery": {"clouds": {"destinations": ["nope"]}}})


def test_a_failed_listing_marks_nothing_gone(app):
    seed(app.clouds["two"], {"c": pem_certificate("c.example.internal")})
    assert app.discover_clouds(["two"]).found
    app.clouds["two"].clear()
    app.providers = lambda d: (_ for _ in ()).throw(ProviderError("memory: unreachable"))
    result = app.discover_clouds(["two"])
    assert result.destinations[0].listing_failed and result.summary.locations_gone == 0


def test_pfx_passwords_include_the_discovery_files_password(workdir, monkeypatch):
    """A cloud PFX is tried with no password, the destination's, and [discovery.files]' password."""
    write_config(
        workdir / "sync.toml",
        DESTS.replace(
            'region = "us-east-1"\n', 'region = "us-east-1"\nformat = "pkcs12"\npkcs12_password_env = "DEST_PFX"\n', 1
        )
        + '\n[discovery.files]\nroots = ["."]\npkcs12_password_env = "FOUND_PFX"\n',
    )
    monkeypatch.setenv("DEST_PFX", "dest-secret")
    monkeypatch.setenv("FOUND_PFX", "found-secret")
    cfg = config_mod.load("sync.toml")
    assert clouds.pfx_passwords(cfg, "one") == [None, b"dest-secret", b"found-secret"]
