"""The Azure Key Vault emulator, driven by the official SDK (and raw HTTPS for the wire format).

Every test talks to a real emulator process over HTTPS; the SDK authenticates with an unchanged
DefaultAzureCredential through the emulator's App Service managed-identity route.
"""

from __future__ import annotations

import copy
import datetime as dt
import http.client
import importlib.util
import json
import re
import sys
import time
import uuid
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from tests.emulators.azure_harness import SCRIPT, make_secret_client, running_azure_emulator

SPEC_FILE = Path(__file__).parent / "specs" / "azure-keyvault-secrets-2025-07-01.json"
API = "api-version=2025-07-01"
HEX32 = re.compile(r"[0-9a-f]{32}")


def uname(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with running_azure_emulator(tmp_path_factory.mktemp("azure-emulator")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(emu):
    with pytest.MonkeyPatch.context() as mp:
        for key, value in emu.env().items():
            mp.setenv(key, value)
        sdk = make_secret_client(emu.url, emu.ca)
        yield sdk
        sdk.close()


@pytest.fixture(scope="module")
def token(emu):
    return emu.token()


# --- auth ---------------------------------------------------------------------------------------


def test_challenge_401_then_token_then_success(emu, client):
    status, headers, body = emu.request("GET", f"/secrets/anything/?{API}")
    assert status == 401
    assert re.fullmatch(
        r'Bearer authorization="https://login\.microsoftonline\.com/[0-9a-f-]{36}", '
        r'resource="https://vault\.azure\.net"',
        headers["www-authenticate"],
    )
    assert body["error"]["code"] == "Unauthorized"

    before = (emu.calls("SetSecret", 401), emu.calls("SetSecret", 200), emu.calls("ManagedIdentityToken", 200))
    fresh = make_secret_client(emu.url, emu.ca)  # new credential and challenge cache
    fresh.set_secret(uname("challenge"), "v")
    after = (emu.calls("SetSecret", 401), emu.calls("SetSecret", 200), emu.calls("ManagedIdentityToken", 200))
    # the SDK's first request carries no token; it then fetches one and replays with the body
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1]
    fresh.close()


def test_only_tokens_from_the_emulator_are_accepted(emu):
    status, headers, body = emu.request("GET", f"/secrets?{API}", token="aGVhZA.Ym9keQ.c2ln")
    assert status == 401 and "www-authenticate" in headers and body["error"]["code"] == "Unauthorized"


def test_token_route_needs_identity_header_and_resource(emu):
    path = "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net"
    assert emu.request("GET", path)[0] == 401
    assert emu.request("GET", "/msi/token?api-version=2019-08-01", headers={"X-IDENTITY-HEADER": "x"})[0] == 400
    status, _, body = emu.request("GET", path, headers={"X-IDENTITY-HEADER": "x"})
    assert status == 200 and body["token_type"] == "Bearer" and body["resource"] == "https://vault.azure.net"
    assert body["expires_on"].isdigit() and int(body["expires_on"]) > time.time()


# --- secrets ------------------------------------------------------------------------------------


def test_set_then_get_latest_and_by_version(emu, client):
    from azure.core.exceptions import ResourceNotFoundError

    name = uname("Get")
    first = client.set_secret(name, "one", content_type="text/plain", tags={"a": "1"})
    second = client.set_secret(name, "two")
    assert HEX32.fullmatch(first.properties.version) and first.properties.version != second.properties.version
    assert second.id == f"{emu.url}/secrets/{name}/{second.properties.version}"

    assert client.get_secret(name).value == "two"
    old = client.get_secret(name, first.properties.version)
    assert (old.value, old.properties.content_type, old.properties.tags) == ("one", "text/plain", {"a": "1"})
    assert client.get_secret(name.upper()).value == "two"  # names are case-insensitive
    assert old.properties.recoverable_days == 90
    assert old.properties.created_on.tzinfo is not None

    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_secret(uname("absent"))
    assert missing.value.error.code == "SecretNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name, "0" * 32)


def test_update_properties_and_disabled_secret(client):
    from azure.core.exceptions import HttpResponseError

    name = uname("update")
    created = client.set_secret(name, "v", tags={"a": "1"})
    props = client.update_secret_properties(name, content_type="application/x-pem-file", tags={"b": "2"})
    assert props.version == created.properties.version
    assert (props.content_type, props.tags) == ("application/x-pem-file", {"b": "2"})

    client.update_secret_properties(name, created.properties.version, enabled=False)
    with pytest.raises(HttpResponseError) as disabled:
        client.get_secret(name)
    assert disabled.value.status_code == 403 and disabled.value.error.code == "Forbidden"
    client.update_secret_properties(name, enabled=True)
    assert client.get_secret(name).value == "v"


def test_list_pages_with_max_page_size(emu, client):
    prefix = uname("page")
    names = {f"{prefix}-{i}" for i in range(5)}
    for name in names:
        client.set_secret(name, "v", tags={"managed-by": "certsync"})

    before = emu.calls("GetSecrets", 200)
    sizes, found = [], set()
    for page in client.list_properties_of_secrets(max_page_size=2).by_page():
        items = list(page)
        sizes.append(len(items))
        found |= {p.name for p in items}
        assert all(p.version is None for p in items)  # list items carry the base id only
    assert names <= found
    assert max(sizes) <= 2 and len(sizes) >= 3
    assert emu.calls("GetSecrets", 200) - before == len(sizes)


def test_versions_are_listed_with_paging(client):
    name = uname("versions")
    versions = {client.set_secret(name, f"v{i}").properties.version for i in range(3)}
    listed = [p.version for p in client.list_properties_of_secret_versions(name, max_page_size=1)]
    assert sorted(listed) == sorted(versions)
    assert list(client.list_properties_of_secret_versions(uname("never"))) == []


def test_soft_delete_then_deleted_get_and_list_then_recover(emu, client):
    from azure.core.exceptions import ResourceNotFoundError

    name = uname("soft")
    client.set_secret(name, "keep", tags={"t": "1"})
    poller = client.begin_delete_secret(name)
    deleted = poller.result()
    poller.wait()
    assert deleted.recovery_id == f"{emu.url}/deletedsecrets/{name}"
    assert deleted.properties.recovery_level == "Recoverable+Purgeable"
    assert deleted.scheduled_purge_date - deleted.deleted_date == dt.timedelta(days=90)

    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)
    got = client.get_deleted_secret(name)
    assert (got.name, got.properties.tags) == (name, {"t": "1"})
    assert name in {d.name for d in client.list_deleted_secrets()}
    assert name not in {p.name for p in client.list_properties_of_secrets()}

    client.begin_recover_deleted_secret(name).wait()
    assert client.get_secret(name).value == "keep"
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)


def test_purge_frees_the_name(client):
    from azure.core.exceptions import ResourceNotFoundError

    name = uname("purge")
    client.set_secret(name, "old")
    client.begin_delete_secret(name).wait()
    client.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.purge_deleted_secret(name)
    client.set_secret(name, "new")
    assert len(list(client.list_properties_of_secret_versions(name))) == 1


def test_writing_a_soft_deleted_name_is_409_conflict(client):
    from azure.core.exceptions import ResourceExistsError

    name = uname("conflict")
    client.set_secret(name, "v")
    client.begin_delete_secret(name).wait()
    with pytest.raises(ResourceExistsError) as conflict:
        client.set_secret(name, "again")
    err = conflict.value
    assert err.status_code == 409 and err.error.code == "Conflict"
    assert err.error.message == (
        f"Secret {name} is currently in a deleted but recoverable state, and its "
        "name cannot be reused; in this state, the secret can only be recovered "
        "or purged."
    )
    assert err.error.innererror == {"code": "ObjectIsDeletedButRecoverable"}


def test_value_limit_is_25600_characters(client):
    from azure.core.exceptions import HttpResponseError

    client.set_secret(uname("max"), "x" * 25_600)
    with pytest.raises(HttpResponseError) as too_big:
        client.set_secret(uname("big"), "x" * 25_601)
    assert too_big.value.status_code == 400 and too_big.value.error.code == "BadParameter"
    assert "25600" in too_big.value.error.message


@pytest.mark.parametrize("bad", ["bad_name", "dot.name", "x" * 128])
def test_bad_names_are_400(client, bad):
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as invalid:
        client.set_secret(bad, "v")
    assert invalid.value.status_code == 400 and invalid.value.error.code == "BadParameter"
    assert "invalid name" in invalid.value.error.message


def test_longest_name_is_accepted(client):
    name = ("n" + uuid.uuid4().hex) * 4
    name = name[:127]
    assert client.set_secret(name, "v").name == name


def test_api_version_is_required(emu, token):
    status, _, body = emu.request("GET", "/secrets", token=token)
    assert status == 400 and body["error"]["code"] == "BadParameter"


def test_unknown_routes(emu, token):
    assert emu.request("GET", f"/keys?{API}", token=token)[0] == 404  # /certificates is served now
    assert emu.request("PUT", f"/deletedsecrets/x?{API}", body={}, token=token)[0] == 405


def test_keep_alive_calls_do_not_stall_on_delayed_acks(emu, token):
    """Headers and body leave as separate TLS records: without TCP_NODELAY each call costs ~40 ms."""
    connection = http.client.HTTPSConnection(emu.url.removeprefix("https://"), context=emu.ssl_context())
    started = time.perf_counter()
    for _ in range(20):
        connection.request("GET", f"/secrets?{API}&maxresults=1", headers={"authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200 and response.getheader("connection") != "close"
    connection.close()
    assert (time.perf_counter() - started) / 20 < 0.02


# --- throttling ---------------------------------------------------------------------------------


def test_throttling_429_with_retry_after_is_honoured_by_the_sdk(tmp_path_factory):
    limit, window = 3, 2
    with running_azure_emulator(
        tmp_path_factory.mktemp("azure-throttled"), "--throttle-per-10s", str(limit), "--throttle-window", str(window)
    ) as emu:
        token = emu.token()
        statuses = [emu.request("GET", f"/secrets?{API}", token=token) for _ in range(limit + 1)]
        status, headers, body = statuses[-1]
        assert [s[0] for s in statuses] == [200] * limit + [429]
        assert 1 <= int(headers["retry-after"]) <= window
        assert body == {
            "error": {
                "code": "Throttled",
                "message": "Request was not processed because too many "
                "requests were received. Reason: VaultRequestTypeLimitReached",
            }
        }
        time.sleep(window + 0.2)

        with pytest.MonkeyPatch.context() as mp:
            for key, value in emu.env().items():
                mp.setenv(key, value)
            client = make_secret_client(emu.url, emu.ca)
            started = time.monotonic()
            for i in range(limit + 1):
                client.set_secret(f"throttled-{i}", "v")
            elapsed = time.monotonic() - started
        # one 429, then the SDK slept Retry-After seconds and its retry succeeded; retrying at
        # once (ignoring the header) would have drawn a second 429
        assert emu.calls("SetSecret", 429) == 1
        assert emu.calls("SetSecret", 200) == limit + 1
        assert elapsed >= 0.9


# --- conformance with the OpenAPI description ---------------------------------------------------


@pytest.fixture(scope="module")
def spec():
    return json.loads(SPEC_FILE.read_text())


def _emulator_module():
    module_spec = importlib.util.spec_from_file_location("certsync_azure_emulator", SCRIPT)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules.setdefault(module_spec.name, module)  # dataclasses look their module up
    module_spec.loader.exec_module(module)
    return module


def test_every_served_operation_is_in_the_spec(spec):
    operations = [op for op in _emulator_module().OPERATIONS if op.api == "secrets"]
    for op in operations:
        described = spec["paths"][op.spec_path][op.method.lower()]
        assert described["operationId"] == op.operation_id
    served = {(op.spec_path, op.method.lower()) for op in operations}
    in_spec = {(path, method) for path, item in spec["paths"].items() for method in item if method != "parameters"}
    assert served <= in_spec
    assert in_spec - served == {("/secrets/{secret-name}/backup", "post"), ("/secrets/restore", "post")}


def _strict(schema):
    """Swagger schema -> JSON Schema that also refuses properties the spec does not describe."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def conform(emu, token, spec):
    definitions = _strict(copy.deepcopy(spec["definitions"]))
    # The real service ends every listing with "nextLink": null; the spec types it as a string only.
    for listing in ("SecretListResult", "DeletedSecretListResult"):
        definitions[listing]["properties"]["nextLink"]["type"] = ["string", "null"]
    by_id = {op["operationId"]: op for item in spec["paths"].values() for m, op in item.items() if m != "parameters"}

    def call(operation_id: str, method: str, path: str, body=None, expect: int = 200):
        status, headers, payload = emu.request(method, path, body=body, token=token)
        assert status == expect, (operation_id, status, payload)
        responses = by_id[operation_id]["responses"]
        described = responses.get(str(status)) or responses["default"]
        if 200 <= status < 300:
            assert str(status) in responses, f"{operation_id} answered {status}, the spec says {list(responses)}"
        if "schema" in described:
            schema = {"$ref": described["schema"]["$ref"], "definitions": definitions}
            errors = sorted(Draft4Validator(schema).iter_errors(payload), key=str)
            assert not errors, f"{operation_id} {status}: {[e.message for e in errors]}"
        else:
            assert payload is None
        if status >= 400:
            assert headers["content-type"].startswith("application/json")
        return payload

    return call


def _local(link: str, emu) -> str:
    assert link.startswith(emu.url + "/")
    return link[len(emu.url) :]


def test_responses_match_the_spec_schemas(emu, conform):
    names = [uname("conf"), uname("conf")]
    later = int(time.time()) + 86400
    set_body = {
        "value": "v1",
        "contentType": "application/x-pem-file",
        "tags": {"managed-by": "certsync"},
        "attributes": {"enabled": True, "exp": later},
    }
    first = conform("SetSecret", "PUT", f"/secrets/{names[0]}?{API}", set_body)
    assert first["value"] == "v1" and first["attributes"]["exp"] == later
    version = first["id"].rsplit("/", 1)[1]
    assert first["id"] == f"{emu.url}/secrets/{names[0]}/{version}" and HEX32.fullmatch(version)
    conform("SetSecret", "PUT", f"/secrets/{names[0]}?{API}", {"value": "v2"})
    conform("SetSecret", "PUT", f"/secrets/{names[1]}?{API}", {"value": "w"})

    assert conform("GetSecret", "GET", f"/secrets/{names[0]}/?{API}")["value"] == "v2"
    assert conform("GetSecret", "GET", f"/secrets/{names[0]}?{API}")["value"] == "v2"
    assert conform("GetSecret", "GET", f"/secrets/{names[0]}/{version}?{API}")["value"] == "v1"
    updated = conform("UpdateSecret", "PATCH", f"/secrets/{names[0]}/{version}?{API}", {"tags": {"x": "y"}})
    assert "value" not in updated and updated["tags"] == {"x": "y"}

    page = conform("GetSecrets", "GET", f"/secrets?{API}&maxresults=1")
    assert len(page["value"]) == 1 and page["nextLink"]
    while page["nextLink"]:
        page = conform("GetSecrets", "GET", _local(page["nextLink"], emu))
    page = conform("GetSecretVersions", "GET", f"/secrets/{names[0]}/versions?{API}&maxresults=1")
    assert page["nextLink"]
    last = conform("GetSecretVersions", "GET", _local(page["nextLink"], emu))
    assert last["nextLink"] is None and len(page["value"] + last["value"]) == 2

    for name in names:
        deleted = conform("DeleteSecret", "DELETE", f"/secrets/{name}?{API}")
        assert "value" not in deleted and deleted["recoveryId"] == f"{emu.url}/deletedsecrets/{name}"
    conform("GetDeletedSecret", "GET", f"/deletedsecrets/{names[0]}?{API}")
    page = conform("GetDeletedSecrets", "GET", f"/deletedsecrets?{API}&maxresults=1")
    while page["nextLink"]:
        page = conform("GetDeletedSecrets", "GET", _local(page["nextLink"], emu))
    conform("SetSecret", "PUT", f"/secrets/{names[0]}?{API}", {"value": "v3"}, expect=409)
    recovered = conform("RecoverDeletedSecret", "POST", f"/deletedsecrets/{names[0]}/recover?{API}")
    assert "value" not in recovered
    conform("PurgeDeletedSecret", "DELETE", f"/deletedsecrets/{names[1]}?{API}", expect=204)

    # errors are KeyVaultError bodies with the status the real service uses
    conform("GetSecret", "GET", f"/secrets/{uname('absent')}/?{API}", expect=404)
    conform("GetDeletedSecret", "GET", f"/deletedsecrets/{names[1]}?{API}", expect=404)
    conform("PurgeDeletedSecret", "DELETE", f"/deletedsecrets/{names[1]}?{API}", expect=404)
    conform("RecoverDeletedSecret", "POST", f"/deletedsecrets/{names[1]}/recover?{API}", expect=404)
    conform("DeleteSecret", "DELETE", f"/secrets/{names[1]}?{API}", expect=404)
    conform("UpdateSecret", "PATCH", f"/secrets/{names[0]}/{'f' * 32}?{API}", {}, expect=404)
    conform("SetSecret", "PUT", f"/secrets/bad_name?{API}", {"value": "v"}, expect=400)
    conform("SetSecret", "PUT", f"/secrets/{names[0]}?{API}", {"contentType": "no value"}, expect=400)
    conform("SetSecret", "PUT", f"/secrets/{names[0]}?{API}", {"value": "x" * 25_601}, expect=400)
    conform("GetSecrets", "GET", f"/secrets?{API}&maxresults=26", expect=400)
    conform("GetSecrets", "GET", f"/secrets?{API}&maxresults=0", expect=400)
    conform("UpdateSecret", "PATCH", f"/secrets/{names[0]}/?{API}", {"attributes": {"enabled": False}})
    conform("GetSecret", "GET", f"/secrets/{names[0]}/?{API}", expect=403)
