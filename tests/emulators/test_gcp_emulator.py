"""The Google Secret Manager emulator (localstack/gcp_emulator.py), run as a real process and
driven over the network by the official client."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import google_crc32c
import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import secretmanager
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import SecretManagerServiceGrpcTransport
from google.rpc import error_details_pb2
from tests.support.gcp_harness import stop

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / "localstack" / "gcp_emulator.py"
AUTO = {"replication": {"automatic": {}}}
ENABLED = secretmanager.SecretVersion.State.ENABLED
DISABLED = secretmanager.SecretVersion.State.DISABLED
DESTROYED = secretmanager.SecretVersion.State.DESTROYED


def start_emulator(*args: str, timeout: float = 20.0):
    """Start the emulator on a free port; returns (process, "127.0.0.1:port")."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, str(EMULATOR), "--port", "0", *args], stdout=subprocess.PIPE, stderr=log, text=True
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("READY port="):
                return proc, f"127.0.0.1:{int(line.split('=')[1])}"
        if proc.poll() is not None:
            break
    proc.kill()
    log.seek(0)
    raise RuntimeError(f"emulator did not start: {log.read().decode()[-2000:]}")


def client_for(endpoint: str) -> secretmanager.SecretManagerServiceClient:
    transport = SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(endpoint))
    return secretmanager.SecretManagerServiceClient(transport=transport)


def admin(endpoint: str, method: str) -> dict:
    with grpc.insecure_channel(endpoint) as channel:
        return json.loads(channel.unary_unary(f"/certsync.emulator.v1.Admin/{method}")(b""))


@pytest.fixture(scope="module")
def emulator():
    proc, endpoint = start_emulator()
    yield endpoint
    stop(proc)


@pytest.fixture(scope="module")
def client(emulator):
    return client_for(emulator)


@pytest.fixture
def project():
    return f"proj-{uuid.uuid4().hex[:10]}"


def new_secret(client, project, secret_id=None, **fields):
    secret_id = secret_id or f"s-{uuid.uuid4().hex[:8]}"
    return client.create_secret(
        request={"parent": f"projects/{project}", "secret_id": secret_id, "secret": {**AUTO, **fields}}
    )


def add(client, secret, data: bytes, **payload):
    return client.add_secret_version(request={"parent": secret.name, "payload": {"data": data, **payload}})


def vnum(name: str) -> int:
    return int(name.rsplit("/", 1)[-1])


# --- secrets -------------------------------------------------------------------------------------


def test_create_get_uses_project_number_and_quoted_etag(client, project):
    s = new_secret(client, project, "alpha", labels={"env": "dev"})
    assert s.name.startswith("projects/") and s.name.endswith("/secrets/alpha")
    number = s.name.split("/")[1]
    assert number.isdigit() and number != project  # like Google: the project number
    assert s.etag.startswith('"') and s.etag.endswith('"')
    assert s.create_time is not None
    got = client.get_secret(name=f"projects/{project}/secrets/alpha")
    assert got.name == s.name and dict(got.labels) == {"env": "dev"}
    assert got.replication.automatic is not None
    # The number addresses the same project.
    assert client.get_secret(name=s.name).etag == s.etag


def test_duplicate_is_already_exists(client, project):
    new_secret(client, project, "dup")
    with pytest.raises(gexc.AlreadyExists, match=r"Secret \[projects/\d+/secrets/dup\] already"):
        new_secret(client, project, "dup")


@pytest.mark.parametrize("secret_id", ["", "has/slash", "dot.ted", "sp ace", "x" * 256, "é"])
def test_invalid_secret_id(client, project, secret_id):
    with pytest.raises(gexc.InvalidArgument):
        client.create_secret(request={"parent": f"projects/{project}", "secret_id": secret_id, "secret": AUTO})


def test_secret_id_of_255_allowed_chars(client, project):
    assert new_secret(client, project, "A_b-9" * 51).name.endswith("A_b-9" * 51)


def test_replication_is_required(client, project):
    with pytest.raises(gexc.InvalidArgument, match="replication"):
        client.create_secret(
            request={"parent": f"projects/{project}", "secret_id": "norepl", "secret": {"labels": {"a": "b"}}}
        )
    with pytest.raises(gexc.InvalidArgument):
        client.create_secret(
            request={
                "parent": f"projects/{project}",
                "secret_id": "um",
                "secret": {"replication": {"user_managed": {}}},
            }
        )
    um = client.create_secret(
        request={
            "parent": f"projects/{project}",
            "secret_id": "um2",
            "secret": {"replication": {"user_managed": {"replicas": [{"location": "us-east1"}]}}},
        }
    )
    assert um.replication.user_managed.replicas[0].location == "us-east1"


@pytest.mark.parametrize(
    "labels",
    [
        {"Upper": "x"},
        {"1digit": "x"},
        {"-dash": "x"},
        {"k.dot": "x"},
        {"": "x"},
        {"k" * 64: "x"},
        {"k": "UPPER"},
        {"k": "v" * 64},
        {"k": "a.b"},
        {"k": "a/b"},
        {f"k{i}": "v" for i in range(65)},
    ],
)
def test_label_rules(client, project, labels):
    with pytest.raises(gexc.InvalidArgument, match="(?i)label"):
        new_secret(client, project, labels=labels)


def test_labels_at_the_limits_are_accepted(client, project):
    labels = {f"k{i}": "" for i in range(63)} | {"k" * 63: "v" * 63}
    assert len(new_secret(client, project, labels=labels).labels) == 64
    assert dict(new_secret(client, project, labels={"managed-by": "certsync", "certsync-fp": "0123abcd" * 4}).labels)


def test_not_found_messages(client, project):
    with pytest.raises(gexc.NotFound, match=r"Secret \[projects/\d+/secrets/nope\] not found\."):
        client.get_secret(name=f"projects/{project}/secrets/nope")
    s = new_secret(client, project, "empty")
    with pytest.raises(gexc.NotFound, match="not found or has no versions"):
        client.access_secret_version(name=f"{s.name}/versions/latest", retry=None)
    with pytest.raises(gexc.NotFound, match=r"Secret Version \[.*/versions/7\] not found"):
        client.get_secret_version(name=f"{s.name}/versions/7")
    with pytest.raises(gexc.NotFound):
        client.add_secret_version(request={"parent": f"projects/{project}/secrets/nope", "payload": {"data": b"x"}})


def test_projects_are_isolated(client, project):
    other = f"{project}-other"
    new_secret(client, project, "same")
    new_secret(client, other, "same")  # no conflict across projects
    assert [s.name for s in client.list_secrets(parent=f"projects/{other}")][0].endswith("/same")
    assert len(list(client.list_secrets(parent=f"projects/{project}"))) == 1


def test_ttl_sets_expire_time_and_the_secret_expires(client, project):
    s = new_secret(client, project, "short", ttl={"seconds": 1})
    assert s.expire_time is not None
    time.sleep(1.2)
    with pytest.raises(gexc.NotFound):
        client.get_secret(name=s.name)
    assert list(client.list_secrets(parent=f"projects/{project}")) == []


def test_regional_secrets_are_unimplemented(client, project):
    with pytest.raises(gexc.MethodNotImplemented):
        client.get_secret(name=f"projects/{project}/locations/us-east1/secrets/x")


# --- versions ------------------------------------------------------------------------------------


def test_versions_are_numbered_and_latest_is_newest(client, project):
    s = new_secret(client, project)
    names = [add(client, s, f"v{i}".encode()).name for i in range(1, 4)]
    assert [vnum(n) for n in names] == [1, 2, 3]
    latest = client.access_secret_version(name=f"{s.name}/versions/latest")
    assert latest.name == names[2] and latest.payload.data == b"v3"
    assert client.access_secret_version(name=names[0]).payload.data == b"v1"
    v = client.get_secret_version(name=f"{s.name}/versions/latest")
    assert v.name == names[2] and v.state == ENABLED and v.etag.startswith('"')


def test_access_returns_crc32c(client, project):
    s = new_secret(client, project)
    add(client, s, b"payload")
    resp = client.access_secret_version(name=f"{s.name}/versions/1")
    assert "data_crc32c" in resp.payload
    assert resp.payload.data_crc32c == google_crc32c.value(b"payload")


def test_crc32c_checked_on_add(client, project):
    s = new_secret(client, project)
    good = add(client, s, b"abc", data_crc32c=google_crc32c.value(b"abc"))
    assert good.client_specified_payload_checksum is True
    assert add(client, s, b"abc").client_specified_payload_checksum is False
    with pytest.raises(gexc.InvalidArgument, match="(?i)checksum"):
        add(client, s, b"abc", data_crc32c=google_crc32c.value(b"abd"))
    assert vnum(add(client, s, b"next").name) == 3  # the failed add used no number


def test_payload_limit_is_64_kib(client, project):
    s = new_secret(client, project)
    assert vnum(add(client, s, b"x" * 65536).name) == 1
    with pytest.raises(gexc.InvalidArgument, match="65536"):
        add(client, s, b"x" * 65537)


def test_latest_disabled_is_failed_precondition(client, project):
    """`latest` is the most recently created version whatever its state (API reference);
    accessing it while disabled fails, it does not fall back to an older version."""
    s = new_secret(client, project)
    add(client, s, b"one")
    two = add(client, s, b"two")
    disabled = client.disable_secret_version(name=two.name)
    assert disabled.state == DISABLED and disabled.etag != two.etag
    with pytest.raises(gexc.FailedPrecondition, match=r"Secret Version \[.*/versions/2\] is in DISABLED state"):
        client.access_secret_version(name=f"{s.name}/versions/latest", retry=None)
    assert client.access_secret_version(name=f"{s.name}/versions/1").payload.data == b"one"
    assert client.enable_secret_version(name=two.name).state == ENABLED
    assert client.access_secret_version(name=f"{s.name}/versions/latest").payload.data == b"two"


def test_destroy_wipes_data_and_is_terminal(client, project):
    s = new_secret(client, project)
    v = add(client, s, b"secret-data")
    destroyed = client.destroy_secret_version(name=v.name)
    assert destroyed.state == DESTROYED and destroyed.destroy_time is not None
    assert client.get_secret_version(name=v.name).state == DESTROYED
    with pytest.raises(gexc.FailedPrecondition, match="DESTROYED state"):
        client.access_secret_version(name=v.name, retry=None)
    with pytest.raises(gexc.FailedPrecondition):
        client.enable_secret_version(name=v.name)
    with pytest.raises(gexc.FailedPrecondition):
        client.disable_secret_version(name=v.name)
    assert client.get_secret_version(name=f"{s.name}/versions/1").destroy_time is not None


def test_version_etags(client, project):
    s = new_secret(client, project)
    v = add(client, s, b"x")
    # Adding a version changes the version's etag, not the secret's (Google's etag docs).
    assert client.get_secret(name=s.name).etag == s.etag
    again = client.enable_secret_version(name=v.name)  # a no-op still changes it
    assert again.state == ENABLED and again.etag != v.etag
    with pytest.raises(gexc.FailedPrecondition, match="etag"):
        client.disable_secret_version(request={"name": v.name, "etag": v.etag})
    assert client.disable_secret_version(request={"name": v.name, "etag": again.etag}).state == DISABLED


def test_list_versions_newest_first_with_state_filter_and_paging(client, project):
    s = new_secret(client, project)
    for i in range(5):
        add(client, s, f"{i}".encode())
    client.disable_secret_version(name=f"{s.name}/versions/2")
    client.destroy_secret_version(name=f"{s.name}/versions/4")
    versions = list(client.list_secret_versions(parent=s.name))
    assert [vnum(v.name) for v in versions] == [5, 4, 3, 2, 1]
    enabled = client.list_secret_versions(request={"parent": s.name, "filter": "state:ENABLED"})
    assert [vnum(v.name) for v in enabled] == [5, 3, 1]
    assert [
        vnum(v.name)
        for v in client.list_secret_versions(
            request={"parent": s.name, "filter": "NOT state:DESTROYED AND NOT state=DISABLED"}
        )
    ] == [5, 3, 1]
    pages = list(client.list_secret_versions(request={"parent": s.name, "page_size": 2}).pages)
    assert [[vnum(v.name) for v in p.versions] for p in pages] == [[5, 4], [3, 2], [1]]
    assert pages[0].total_size == 5 and pages[-1].next_page_token == ""


def test_version_alias(client, project):
    s = new_secret(client, project)
    add(client, s, b"one")
    add(client, s, b"two")
    client.update_secret(
        request={
            "secret": {"name": s.name, "version_aliases": {"current": 1}},
            "update_mask": {"paths": ["version_aliases"]},
        }
    )
    assert client.access_secret_version(name=f"{s.name}/versions/current").payload.data == b"one"
    with pytest.raises(gexc.InvalidArgument):
        client.update_secret(
            request={
                "secret": {"name": s.name, "version_aliases": {"x": 9}},
                "update_mask": {"paths": ["version_aliases"]},
            }
        )


# --- list, filters, paging -----------------------------------------------------------------------


def test_list_paging_with_page_tokens(client, project):
    for i in range(5):
        new_secret(client, project, f"page-{i}", labels={"batch": "b1"})
    pager = client.list_secrets(request={"parent": f"projects/{project}", "page_size": 2})
    pages = list(pager.pages)
    assert [len(p.secrets) for p in pages] == [2, 2, 1]
    assert all(p.next_page_token for p in pages[:-1]) and pages[-1].next_page_token == ""
    assert pages[0].total_size == 5
    names = [s.name.rsplit("/", 1)[-1] for p in pages for s in p.secrets]
    assert names == [f"page-{i}" for i in range(5)]
    # A token is tied to its filter; garbage and negative sizes are refused.
    with pytest.raises(gexc.InvalidArgument):
        client.list_secrets(
            request={
                "parent": f"projects/{project}",
                "page_size": 2,
                "page_token": pages[0].next_page_token,
                "filter": "labels.batch=b1",
            }
        )
    with pytest.raises(gexc.InvalidArgument):
        client.list_secrets(request={"parent": f"projects/{project}", "page_token": "garbage"})
    with pytest.raises(gexc.InvalidArgument):
        client.list_secrets(request={"parent": f"projects/{project}", "page_size": -1})
    filtered = list(
        client.list_secrets(
            request={"parent": f"projects/{project}", "filter": "labels.batch=b1", "page_size": 4}
        ).pages
    )
    assert [len(p.secrets) for p in filtered] == [4, 1] and filtered[0].total_size == 0


def ids(client, project, flt):
    return sorted(
        s.name.rsplit("/", 1)[-1] for s in client.list_secrets(request={"parent": f"projects/{project}", "filter": flt})
    )


def test_list_filters(client, project):
    new_secret(client, project, "a-prod", labels={"managed-by": "certsync", "env": "prod"})
    new_secret(client, project, "b-dev", labels={"managed-by": "certsync", "env": "dev"})
    new_secret(client, project, "c-other", labels={"env": "prod"})
    new_secret(client, project, "d-none")
    new_secret(client, project, "e-empty", labels={"flag": ""})
    assert ids(client, project, "labels.flag:*") == ["e-empty"]  # an empty value counts
    assert ids(client, project, 'labels.flag=""') == ["e-empty"]
    client.delete_secret(name=f"projects/{project}/secrets/e-empty")
    assert ids(client, project, "labels.managed-by=certsync") == ["a-prod", "b-dev"]
    assert ids(client, project, "labels.env:*") == ["a-prod", "b-dev", "c-other"]
    assert ids(client, project, "labels:env") == ["a-prod", "b-dev", "c-other"]
    assert ids(client, project, "labels.managed-by=certsync AND labels.env=prod") == ["a-prod"]
    assert ids(client, project, "labels.managed-by=certsync labels.env=prod") == ["a-prod"]
    assert ids(client, project, "labels.env=dev OR name:d-") == ["b-dev", "d-none"]
    assert ids(client, project, "NOT labels.env:*") == ["d-none"]
    assert ids(client, project, "-labels.managed-by=certsync") == ["c-other", "d-none"]
    assert ids(client, project, "name:prod") == ["a-prod"]
    assert ids(client, project, "name:a-*od") == ["a-prod"]
    assert ids(client, project, '(labels.env="prod") AND NOT name:c-') == ["a-prod"]
    assert ids(client, project, "replication.automatic:*") == ["a-prod", "b-dev", "c-other", "d-none"]
    assert ids(client, project, "create_time>2000-01-01T00:00:00Z") == ["a-prod", "b-dev", "c-other", "d-none"]
    assert ids(client, project, "create_time<2000-01-01T00:00:00Z") == []
    for bad in ("bogus=1", "labels.env", "labels.env=prod AND", "(labels.env=prod"):
        with pytest.raises(gexc.InvalidArgument):
            ids(client, project, bad)


# --- update and delete ---------------------------------------------------------------------------


def test_update_mask(client, project):
    s = new_secret(client, project, labels={"a": "1"}, annotations={"note": "keep"})
    updated = client.update_secret(
        request={
            "secret": {"name": s.name, "labels": {"b": "2"}, "annotations": {"note": "changed"}},
            "update_mask": {"paths": ["labels"]},
        }
    )
    assert dict(updated.labels) == {"b": "2"}
    assert dict(updated.annotations) == {"note": "keep"}  # not in the mask
    assert updated.etag != s.etag
    both = client.update_secret(
        request={
            "secret": {"name": s.name, "annotations": {"note": "changed"}, "labels": {}},
            "update_mask": {"paths": ["annotations", "labels"]},
        }
    )
    assert dict(both.annotations) == {"note": "changed"} and dict(both.labels) == {}
    for paths in ([], ["replication"], ["create_time"], ["nonsense"]):
        with pytest.raises(gexc.InvalidArgument):
            client.update_secret(request={"secret": {"name": s.name, **AUTO}, "update_mask": {"paths": paths}})
    with pytest.raises(gexc.InvalidArgument, match="(?i)label"):
        client.update_secret(
            request={"secret": {"name": s.name, "labels": {"Bad": "x"}}, "update_mask": {"paths": ["labels"]}}
        )
    with pytest.raises(gexc.NotFound):
        client.update_secret(
            request={"secret": {"name": f"projects/{project}/secrets/none"}, "update_mask": {"paths": ["labels"]}}
        )


def test_update_with_stale_etag_fails(client, project):
    s = new_secret(client, project)
    fresh = client.update_secret(
        request={"secret": {"name": s.name, "labels": {"x": "1"}}, "update_mask": {"paths": ["labels"]}}
    )
    with pytest.raises(gexc.FailedPrecondition, match="etag"):
        client.update_secret(
            request={
                "secret": {"name": s.name, "labels": {"x": "2"}, "etag": s.etag},
                "update_mask": {"paths": ["labels"]},
            }
        )
    ok = client.update_secret(
        request={
            "secret": {"name": s.name, "labels": {"x": "3"}, "etag": fresh.etag},
            "update_mask": {"paths": ["labels"]},
        }
    )
    assert dict(ok.labels) == {"x": "3"}


def test_delete_with_etag(client, project):
    s = new_secret(client, project)
    add(client, s, b"data")
    with pytest.raises(gexc.FailedPrecondition, match="etag"):
        client.delete_secret(request={"name": s.name, "etag": '"123"'})
    client.get_secret(name=s.name)  # still there
    client.delete_secret(request={"name": s.name, "etag": s.etag})
    with pytest.raises(gexc.NotFound):
        client.get_secret(name=s.name)
    with pytest.raises(gexc.NotFound):
        client.access_secret_version(name=f"{s.name}/versions/1", retry=None)
    with pytest.raises(gexc.NotFound):
        client.delete_secret(name=s.name)
    # The id can be used again, and versions start over.
    again = new_secret(client, project, s.name.rsplit("/", 1)[-1])
    assert vnum(add(client, again, b"new").name) == 1


# --- call counts and quotas ----------------------------------------------------------------------


def test_call_counts_via_admin_method_and_stats_file(tmp_path):
    stats_file = tmp_path / "stats.json"
    proc, endpoint = start_emulator("--stats-file", str(stats_file))
    try:
        c = client_for(endpoint)
        s = new_secret(c, "count-proj", "one")
        add(c, s, b"x")
        c.access_secret_version(name=f"{s.name}/versions/latest")
        with pytest.raises(gexc.NotFound):
            c.get_secret(name="projects/count-proj/secrets/missing")
        stats = admin(endpoint, "GetStats")
        assert stats["calls"] == {"CreateSecret": 1, "AddSecretVersion": 1, "AccessSecretVersion": 1, "GetSecret": 1}
        assert stats["total"] == 4 and stats["errors"] == {"GetSecret": {"NOT_FOUND": 1}}
        assert stats["by_project"]["count-proj"]["CreateSecret"] == 1
        assert json.loads(stats_file.read_text())["total"] == 4
        admin(endpoint, "ResetStats")
        assert admin(endpoint, "GetStats")["total"] == 0
        assert c.get_secret(name=s.name).name == s.name  # state survives ResetStats
        admin(endpoint, "Reset")
        with pytest.raises(gexc.NotFound):
            c.get_secret(name=s.name)
    finally:
        stop(proc)
    assert json.loads(stats_file.read_text())["calls"] == {"GetSecret": 1}  # Reset zeroed them


def test_quota_resource_exhausted_per_project():
    proc, endpoint = start_emulator(
        "--write-quota-per-minute", "3", "--read-quota-per-minute", "4", "--quota-window-seconds", "1.5"
    )
    try:
        c = client_for(endpoint)
        for i in range(3):
            c.create_secret(request={"parent": "projects/q1", "secret_id": f"s{i}", "secret": AUTO}, retry=None)
        with pytest.raises(gexc.ResourceExhausted, match="Write requests") as info:
            c.create_secret(request={"parent": "projects/q1", "secret_id": "s3", "secret": AUTO}, retry=None)
        assert any(
            isinstance(d, error_details_pb2.ErrorInfo) and d.reason == "RATE_LIMIT_EXCEEDED" for d in info.value.details
        )
        # Quotas are per project and per kind: another project and reads still pass.
        c.create_secret(request={"parent": "projects/q2", "secret_id": "s0", "secret": AUTO}, retry=None)
        for _ in range(4):
            c.get_secret(name="projects/q1/secrets/s0", retry=None)
        with pytest.raises(gexc.ResourceExhausted, match="Read requests"):
            c.get_secret(name="projects/q1/secrets/s0", retry=None)
        # The project number is the same project for quota purposes.
        number = c.get_secret(name="projects/q2/secrets/s0", retry=None).name.split("/")[1]
        assert number.isdigit()
        time.sleep(1.6)  # the sliding window moves on
        c.create_secret(request={"parent": "projects/q1", "secret_id": "s3", "secret": AUTO}, retry=None)
        stats = admin(endpoint, "GetStats")
        assert stats["errors"]["CreateSecret"] == {"RESOURCE_EXHAUSTED": 1}
    finally:
        stop(proc)


def test_client_retry_rides_out_resource_exhausted():
    """The official client's retry (as providers/gcp.py configures it) waits out the quota."""
    from google.api_core.retry import Retry, if_exception_type

    proc, endpoint = start_emulator("--write-quota-per-minute", "1", "--quota-window-seconds", "0.5")
    try:
        c = client_for(endpoint)
        retry = Retry(predicate=if_exception_type(gexc.ResourceExhausted), initial=0.2, maximum=1.0, timeout=10)
        for i in range(3):
            c.create_secret(request={"parent": "projects/r", "secret_id": f"s{i}", "secret": AUTO}, retry=retry)
        stats = admin(endpoint, "GetStats")
        assert stats["calls"]["CreateSecret"] > 3  # rejected calls were retried
        assert stats["errors"]["CreateSecret"]["RESOURCE_EXHAUSTED"] == stats["calls"]["CreateSecret"] - 3
    finally:
        stop(proc)
