"""providers/gcp.py against two independent Google Secret Manager emulators, over the network:
our gRPC emulator (localstack/gcp_emulator.py) and drongo (PyPI) over REST.

The reusable pieces (`start_gcp_emulator`, `start_drongo`, `make_gcp_provider`, `emulator_stats`,
`stop`) live in tests/support/gcp_harness.py, shared with the contract suite.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from providers.base import ownership_labels
from providers.gcp import GcpProvider, build_client, default_retry, from_destination
from sync.errors import Throttled, UsageError
from tests.support.gcp_harness import emulator_stats, make_gcp_provider, start_drongo, start_gcp_emulator, stop


@pytest.fixture(scope="module")
def gcp_emulator():
    # A small default page size so list_managed has to follow page tokens.
    proc, endpoint = start_gcp_emulator("--default-page-size", "2")
    yield endpoint
    stop(proc)


@pytest.fixture(scope="module")
def drongo():
    proc, endpoint = start_drongo()
    yield endpoint
    stop(proc)


@pytest.fixture(params=["emulator-grpc", "drongo-rest"])
def backend(request):
    if request.param == "emulator-grpc":
        return SimpleNamespace(kind=request.param, transport="grpc", endpoint=request.getfixturevalue("gcp_emulator"))
    return SimpleNamespace(kind=request.param, transport="rest", endpoint=request.getfixturevalue("drongo"))


@pytest.fixture
def project():
    return f"proj-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def gcp_provider_factory(backend, project):
    def factory(**kw) -> GcpProvider:
        return make_gcp_provider(backend.endpoint, backend.transport, project, **kw)

    return factory


@pytest.fixture
def raw(backend):
    """The official client on the same backend, to look behind the provider's back."""
    return build_client(backend.endpoint, backend.transport, insecure=True)


def uname(prefix: str = "cert") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def labels_for(name: str, payload: str | bytes) -> dict[str, str]:
    import hashlib

    data = payload.encode() if isinstance(payload, str) else payload
    return ownership_labels(name, hashlib.sha256(data).hexdigest()[:32])


def versions(raw, project: str, name: str) -> dict[int, str]:
    return {
        int(v.name.rsplit("/", 1)[-1]): v.state.name
        for v in raw.list_secret_versions(parent=f"projects/{project}/secrets/{name}")
    }


# --- version retention and label rules, on both backends ---------------------------------------
# (What every provider does -- create, update, list, delete, ownership, names, sizes -- is in
# tests/contract, which runs against these same two backends.)


def test_keep_versions_destroys_older_enabled_versions(gcp_provider_factory, raw, project):
    p = gcp_provider_factory(keep_versions=2)
    name = uname()
    for i in range(4):
        p.put(name, f"v{i}", content_type="text/plain", labels=labels_for(name, f"v{i}"))
    assert versions(raw, project, name) == {4: "ENABLED", 3: "ENABLED", 2: "DESTROYED", 1: "DESTROYED"}
    assert p.get(name).value == "v3"


def test_keep_versions_zero_keeps_everything(gcp_provider_factory, raw, project):
    p = gcp_provider_factory(keep_versions=0)
    name = uname()
    for i in range(3):
        p.put(name, f"v{i}", content_type="text/plain", labels=labels_for(name, f"v{i}"))
    assert set(versions(raw, project, name).values()) == {"ENABLED"}


def test_pruning_leaves_disabled_versions_alone(gcp_provider_factory, raw, project):
    p = gcp_provider_factory(keep_versions=1)
    name = uname()
    p.put(name, "a", content_type="text/plain", labels=labels_for(name, "a"))
    raw.disable_secret_version(name=f"projects/{project}/secrets/{name}/versions/1")
    p.put(name, "b", content_type="text/plain", labels=labels_for(name, "b"))
    p.put(name, "c", content_type="text/plain", labels=labels_for(name, "c"))
    assert versions(raw, project, name) == {3: "ENABLED", 2: "DESTROYED", 1: "DISABLED"}


def test_label_rules_are_checked_before_any_call(gcp_provider_factory, backend, project):
    """Google's label rules (lowercase values, keys starting with a letter); names and sizes are
    in the contract suite."""
    p = gcp_provider_factory()
    with pytest.raises(UsageError, match="label value"):
        p.put(uname(), "x", content_type="text/plain", labels={"certsync-cert": "Upper"})
    with pytest.raises(UsageError, match="label key"):
        p.put(uname(), "x", content_type="text/plain", labels={"9key": "v"})
    if backend.kind == "emulator-grpc":
        assert project not in emulator_stats(backend.endpoint)["by_project"]


# --- Google specifics, on our emulator only (drongo does not implement them) -------------------


@pytest.fixture
def emu_provider(gcp_emulator, project):
    return lambda **kw: make_gcp_provider(gcp_emulator, "grpc", project, **kw)


def test_call_counts_per_put(emu_provider, gcp_emulator, project):
    p = emu_provider(keep_versions=2)
    name = uname()

    def calls():
        return emulator_stats(gcp_emulator)["by_project"].get(project, {})

    p.put(name, "1", content_type="text/plain", labels=labels_for(name, "1"))
    # get (absent), create without the fingerprint, add the version, then set the labels.
    assert calls() == {"GetSecret": 1, "CreateSecret": 1, "AddSecretVersion": 1, "UpdateSecret": 1}
    p.put(name, "2", content_type="text/plain", labels=labels_for(name, "2"))
    assert calls()["UpdateSecret"] == 2 and "ListSecretVersions" not in calls()
    same = labels_for(name, "2")
    p.put(name, "2", content_type="text/plain", labels=same)  # labels unchanged: no update
    # Three enabled versions > keep_versions: list them (two pages of 2 on this emulator) and
    # destroy the oldest.
    assert calls()["UpdateSecret"] == 2 and calls()["ListSecretVersions"] == 2
    assert calls()["DestroySecretVersion"] == 1 and calls()["GetSecret"] == 3


def test_get_when_latest_is_disabled_has_no_value(emu_provider, project):
    p = emu_provider()
    name = uname()
    p.put(name, "a", content_type="text/plain", labels=labels_for(name, "a"))
    p.put(name, "b", content_type="text/plain", labels=labels_for(name, "b"))
    p._client.disable_secret_version(name=f"projects/{project}/secrets/{name}/versions/2")
    got = p.get(name)
    assert got is not None and got.value is None and got.managed
    p.put(name, "c", content_type="text/plain", labels=labels_for(name, "c"))  # repairs it
    assert p.get(name).value == "c"


def test_quota_exhaustion_is_throttled_after_client_retries(project):
    proc, endpoint = start_gcp_emulator("--write-quota-per-minute", "2")
    try:
        p = make_gcp_provider(endpoint, "grpc", project, retry=default_retry(timeout=1.5))
        name, payload = uname(), "PAYLOAD-SENTINEL"
        with pytest.raises(Throttled, match=rf"{name}.*RESOURCE_EXHAUSTED.*gave up") as info:
            p.put(name, payload, content_type="text/plain", labels=labels_for(name, payload))
        assert payload not in str(info.value) and "\n" not in str(info.value)
        stats = emulator_stats(endpoint)
        assert sum(e.get("RESOURCE_EXHAUSTED", 0) for e in stats["errors"].values()) >= 2
    finally:
        stop(proc)


def test_from_destination_builds_both_transports(gcp_emulator, drongo, project):
    for endpoint, transport in ((gcp_emulator, "grpc"), (drongo, "rest")):
        dest = SimpleNamespace(
            name="gcp-dev",
            provider="gcp",
            project=project,
            endpoint=endpoint,
            transport=transport,
            insecure=True,
            adopt=True,
            keep_versions=3,
        )
        p = from_destination(dest)
        assert (p.kind, p.adopt, p.keep_versions, p.destination) == ("gcp", True, 3, "gcp-dev")
        name = uname()
        p.put(name, "v", content_type="text/plain", labels=labels_for(name, "v"))
        assert p.get(name).value == "v"
    minimal = SimpleNamespace(project=project, endpoint=gcp_emulator, insecure=True)
    assert from_destination(minimal).keep_versions == 2  # defaults via getattr


def test_unreachable_endpoint_is_a_provider_error(project):
    from sync.errors import ProviderError

    p = make_gcp_provider("127.0.0.1:1", "rest", project)
    with pytest.raises(ProviderError, match="cannot read secret 'abc'"):
        p.get("abc")
