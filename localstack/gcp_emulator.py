#!/usr/bin/env python3
"""A local, in-memory Google Secret Manager (v1) over gRPC, for tests and benchmarks.

Google ships no Secret Manager emulator. This script serves
``google.cloud.secretmanager.v1.SecretManagerService`` with the official request/response
messages of ``google-cloud-secret-manager`` (proto-plus ``deserialize``/``serialize`` behind
``grpc.method_handlers_generic_handler``), so the official client talks to it unchanged::

    .venv/bin/python localstack/gcp_emulator.py --port 8085 [--host 127.0.0.1]
        [--write-quota-per-minute 600] [--read-quota-per-minute 600]
        [--access-quota-per-minute 90000] [--default-page-size 25000] [--latency-ms 20]
        [--stats-file PATH] [--project-ids-in-names]

It prints ``READY port=N`` on stdout (flushed) once it serves; ``--port 0`` picks a free port.
SIGTERM / SIGINT stop it. Client side::

    transport = SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel("127.0.0.1:8085"))
    client = secretmanager.SecretManagerServiceClient(transport=transport)

Semantics follow the API reference and the service docs (etags, filtering, quotas):
  * CreateSecret: secret_id ``[A-Za-z0-9_-]{1,255}``; replication required; labels (<= 64;
    keys ``[\\p{Ll}\\p{Lo}][\\p{Ll}\\p{Lo}\\p{N}_-]{0,62}``,
    values ``[\\p{Ll}\\p{Lo}\\p{N}_-]{0,63}``,
    <= 128 UTF-8 bytes each) and annotations are checked -> INVALID_ARGUMENT; duplicates ->
    ALREADY_EXISTS. ``ttl`` becomes ``expire_time``; an expired secret disappears.
  * Versions are numbered 1, 2, 3... per secret and never renumbered. ``latest`` is the most
    recently created version *whatever its state* (as the API documents it); accessing a
    DISABLED or DESTROYED version -> FAILED_PRECONDITION "Secret Version [...] is in X state.".
    Version aliases (``version_aliases``) resolve in Get/AccessSecretVersion.
  * AddSecretVersion: payload <= 65536 bytes; a ``data_crc32c`` that does not match the data
    -> INVALID_ARGUMENT; the checksum is stored (computed when absent) and returned by Access.
    Adding a version does not change the secret's etag (per the etag docs).
  * Etags are quoted strings (``"1618e2a0c3d7f0"``) changing on every modification of the
    resource they belong to, even a no-op one. A stale etag on UpdateSecret (inside the
    Secret), DeleteSecret, Enable/Disable/DestroySecretVersion -> FAILED_PRECONDITION.
  * DestroySecretVersion wipes the data and sets destroy_time; DESTROYED is terminal.
  * ListSecrets (sorted by name) / ListSecretVersions (newest first): page_size 0 -> the
    server default (``--default-page-size``), capped at 25000, negative -> INVALID_ARGUMENT;
    opaque page tokens bound to the filter; ``total_size`` is 0 when a filter is set.
    Filters (AIP-160 subset): ``AND``, ``OR``, ``NOT``/``-``, parentheses, implicit AND;
    operators ``= != : < <= > >=``; fields ``name`` (``:`` = substring, ``*`` wildcard),
    ``labels.K`` / ``annotations.K`` (``:*`` = has key), ``labels:K``, ``create_time``,
    ``expire_time``, ``replication.automatic:*``, ``replication.user_managed:*``,
    ``replication.user_managed.replicas.location``; versions: ``state``, ``name``,
    ``create_time``, ``destroy_time``. Anything else -> INVALID_ARGUMENT.
  * Resource names in responses carry the project *number*, as the real API does (a stable
    number derived from the project id; ``--project-ids-in-names`` keeps the id). Requests
    may use either. ``projects/*/locations/*`` (regional secrets) -> UNIMPLEMENTED.
  * Quotas (off unless given) per project over a sliding 60 s window, as the real service
    counts them: "write" = Create/Update/DeleteSecret, AddSecretVersion, Enable/Disable/
    DestroySecretVersion; "read" = Get/ListSecret(s), Get/ListSecretVersion(s); "access" =
    AccessSecretVersion. Over quota -> RESOURCE_EXHAUSTED with an ErrorInfo detail
    (reason RATE_LIMIT_EXCEEDED); a rejected call consumes nothing.

Call counts (every call that reached the server, including rejected ones) are available
independently of the client under test, two ways:
  * gRPC admin methods with raw JSON bytes (no proto needed)::

        ch = grpc.insecure_channel("127.0.0.1:8085")
        raw = ch.unary_unary("/certsync.emulator.v1.Admin/GetStats")(b"")
        stats = json.loads(raw)   # {"calls": {"CreateSecret": 3, ...}, "errors": {...},
                                  #  "total": 7, "by_project": {"my-proj": {...}}}
        ch.unary_unary("/certsync.emulator.v1.Admin/ResetStats")(b"")   # zero the counters
        ch.unary_unary("/certsync.emulator.v1.Admin/Reset")(b"")        # drop all state too
  * ``--stats-file PATH``: the same JSON rewritten atomically after every call.
Admin calls are neither counted nor subject to quota.
"""

from __future__ import annotations

import argparse
import base64
import collections
import fnmatch
import hashlib
import json
import os
import random
import re
import signal
import sys
import threading
import time
import unicodedata
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC

import google_crc32c
import grpc
from google.cloud.secretmanager_v1.types import resources, service
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
ADMIN_SERVICE = "certsync.emulator.v1.Admin"
MAX_PAYLOAD = 65536
MAX_PAGE_SIZE = 25000
SECRET_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
ANNOTATION_KEY_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
PROJECT_RE = re.compile(r"projects/([^/]+)")
SECRET_RE = re.compile(r"projects/([^/]+)/secrets/([^/]+)")
VERSION_RE = re.compile(r"projects/([^/]+)/secrets/([^/]+)/versions/([^/]+)")
LOCATION_RE = re.compile(r"projects/[^/]+/locations/.*")

ENABLED = resources.SecretVersion.State.ENABLED
DISABLED = resources.SecretVersion.State.DISABLED
DESTROYED = resources.SecretVersion.State.DESTROYED

# Fields UpdateSecret may change (immutable or output-only ones are refused).
MUTABLE_PATHS = {
    "labels",
    "annotations",
    "topics",
    "rotation",
    "expire_time",
    "ttl",
    "version_aliases",
    "version_destroy_ttl",
    "customer_managed_encryption",
}
IMMUTABLE_PATHS = {"name", "replication", "create_time", "etag", "tags", "secret_type", "policy_member"}

QUOTA_KIND = {
    "CreateSecret": "write",
    "UpdateSecret": "write",
    "DeleteSecret": "write",
    "AddSecretVersion": "write",
    "EnableSecretVersion": "write",
    "DisableSecretVersion": "write",
    "DestroySecretVersion": "write",
    "GetSecret": "read",
    "ListSecrets": "read",
    "GetSecretVersion": "read",
    "ListSecretVersions": "read",
    "AccessSecretVersion": "access",
}
QUOTA_NAMES = {"write": "Write requests", "read": "Read requests", "access": "Access requests"}


class ApiError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, details: list | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []


def invalid(msg: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def now() -> datetime:
    return datetime.now(UTC)


_etag_lock = threading.Lock()
_etag_last = 0


def new_etag() -> str:
    """Quoted, strictly increasing hex of microseconds, like the real service's etags."""
    global _etag_last
    with _etag_lock:
        _etag_last = max(time.time_ns() // 1000, _etag_last + 1)
        return f'"{_etag_last:x}"'


def project_number(project: str) -> str:
    if project.isdigit():
        return project
    digest = int(hashlib.sha256(project.encode()).hexdigest()[:12], 16)
    return str(100000000000 + digest % 900000000000)


def crc32c(data: bytes) -> int:
    return google_crc32c.value(data)


# --- validation ---------------------------------------------------------------------------------


def _label_char_ok(c: str, first: bool) -> bool:
    cat = unicodedata.category(c)
    if cat in ("Ll", "Lo"):
        return True
    return not first and (cat.startswith("N") or c in "_-")


def validate_labels(labels: dict[str, str]) -> None:
    if len(labels) > 64:
        raise invalid(f"Secret has {len(labels)} labels; at most 64 labels can be assigned.")
    for key, value in labels.items():
        if (
            not 1 <= len(key) <= 63
            or len(key.encode()) > 128
            or not all(_label_char_ok(c, i == 0) for i, c in enumerate(key))
        ):
            raise invalid(
                f"Label key {key!r} is invalid: keys must be 1-63 lowercase letters, "
                "digits, '_' or '-', starting with a lowercase letter."
            )
        if len(value) > 63 or len(value.encode()) > 128 or not all(_label_char_ok(c, False) for c in value):
            raise invalid(
                f"Label value {value!r} of key {key!r} is invalid: values must be "
                "0-63 lowercase letters, digits, '_' or '-'."
            )


def validate_annotations(annotations: dict[str, str]) -> None:
    total = 0
    for key, value in annotations.items():
        if len(key.encode()) > 128 or not ANNOTATION_KEY_RE.fullmatch(key):
            raise invalid(
                f"Annotation key {key!r} is invalid: 1-63 characters, starting and "
                "ending with an alphanumeric character, with '-', '_', '.' between."
            )
        total += len(key.encode()) + len(value.encode())
    if total >= 16 * 1024:
        raise invalid(f"Total size of annotation keys and values is {total} bytes; it must be less than 16KiB.")


def validate_replication(secret: resources.Secret) -> None:
    if "replication" not in secret:
        raise invalid("Secret.replication is required.")
    pb = resources.Replication.pb(secret.replication)
    kind = pb.WhichOneof("replication")
    if kind is None:
        raise invalid("Secret.replication must set one of automatic or user_managed.")
    if kind == "user_managed":
        locations = [r.location for r in pb.user_managed.replicas]
        if not locations or any(not loc for loc in locations):
            raise invalid("Secret.replication.user_managed.replicas must name at least one location, each non-empty.")
        if len(set(locations)) != len(locations):
            raise invalid("Secret.replication.user_managed.replicas has duplicate locations.")


def validate_aliases(aliases: dict[str, int], versions: dict[int, VersionRec]) -> None:
    if len(aliases) > 50:
        raise invalid("No more than 50 version aliases can be assigned to a secret.")
    for alias, number in aliases.items():
        if not ALIAS_RE.fullmatch(alias) or alias in ("latest", "NEW"):
            raise invalid(f"Version alias {alias!r} is invalid.")
        if number not in versions:
            raise invalid(f"Version alias {alias!r} points to version {number}, which does not exist.")


def validate_topics(secret: resources.Secret) -> None:
    if len(secret.topics) > 10:
        raise invalid("A secret can have at most 10 topics.")
    for topic in secret.topics:
        if not re.fullmatch(r"projects/[^/]+/topics/[^/]+", topic.name):
            raise invalid(f"Topic name {topic.name!r} must have the form projects/*/topics/*.")
    if "rotation" in secret and not secret.topics:
        raise invalid("Secret.rotation requires at least one topic in Secret.topics.")


# --- state ------------------------------------------------------------------------------------


@dataclass
class VersionRec:
    number: int
    data: bytes | None
    crc32c: int
    client_checksum: bool
    create_time: datetime
    etag: str
    state: int = ENABLED
    destroy_time: datetime | None = None


@dataclass
class SecretRec:
    secret_id: str
    stored: resources.Secret  # user-settable fields (labels, replication, ...)
    create_time: datetime
    etag: str
    versions: dict[int, VersionRec] = field(default_factory=dict)
    next_version: int = 1

    def expired(self) -> bool:
        pb = resources.Secret.pb(self.stored)
        return pb.HasField("expire_time") and pb.expire_time.ToDatetime(UTC) <= now()


class Store:
    def __init__(self, ids_in_names: bool = False) -> None:
        self.lock = threading.RLock()
        self.projects: dict[str, dict[str, SecretRec]] = {}
        self.ids_in_names = ids_in_names
        self.display: dict[str, str] = {}  # project number -> the spelling used in names

    def project(self, project: str) -> tuple[str, dict[str, SecretRec]]:
        number = project_number(project)
        if self.ids_in_names:
            self.display.setdefault(number, project)
        else:
            self.display[number] = number
        return number, self.projects.setdefault(number, {})

    def secret_name(self, number: str, secret_id: str) -> str:
        return f"projects/{self.display.get(number, number)}/secrets/{secret_id}"

    def lookup(self, project: str, secret_id: str) -> tuple[str, SecretRec]:
        number, secrets = self.project(project)
        rec = secrets.get(secret_id)
        if rec is not None and rec.expired():
            del secrets[secret_id]
            rec = None
        if rec is None:
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"Secret [{self.secret_name(number, secret_id)}] not found.")
        return number, rec


def parse_project(parent: str) -> str:
    if LOCATION_RE.fullmatch(parent or ""):
        raise ApiError(grpc.StatusCode.UNIMPLEMENTED, "Regional secrets (projects/*/locations/*) are not emulated.")
    m = PROJECT_RE.fullmatch(parent or "")
    if not m:
        raise invalid(f"Invalid resource field value in the request: parent {parent!r} must have the form projects/*.")
    return m.group(1)


def parse_secret(name: str) -> tuple[str, str]:
    if LOCATION_RE.fullmatch(name or ""):
        raise ApiError(grpc.StatusCode.UNIMPLEMENTED, "Regional secrets (projects/*/locations/*) are not emulated.")
    m = SECRET_RE.fullmatch(name or "")
    if not m:
        raise invalid(f"Invalid resource field value in the request: {name!r} must have the form projects/*/secrets/*.")
    return m.group(1), m.group(2)


def parse_version(name: str) -> tuple[str, str, str]:
    if LOCATION_RE.fullmatch(name or ""):
        raise ApiError(grpc.StatusCode.UNIMPLEMENTED, "Regional secrets (projects/*/locations/*) are not emulated.")
    m = VERSION_RE.fullmatch(name or "")
    if not m:
        raise invalid(
            f"Invalid resource field value in the request: {name!r} must have the form projects/*/secrets/*/versions/*."
        )
    return m.group(1), m.group(2), m.group(3)


def check_etag(given: str, current: str) -> None:
    if given and given != current:
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION, f"The etag {given} does not match the current etag of the resource."
        )


# --- filters (AIP-160 subset) -----------------------------------------------------------------

_RESTRICTION = re.compile(
    r"(?P<field>[A-Za-z_][\w.\-]*)\s*(?P<op><=|>=|!=|=|:|<|>)\s*"
    r'(?P<val>"(?:[^"\\]|\\.)*"|[^\s()]+)'
)


class Filter:
    """Parses once into a predicate tree; evaluate with a field resolver."""

    def __init__(self, text: str, fields: tuple[str, ...]) -> None:
        self.text = text.strip()
        self.fields = fields
        self.pos = 0
        self.tree = self._expr() if self.text else None
        self._skip()
        if self.pos != len(self.text):
            raise invalid(f"Invalid filter {text!r}: unexpected text at position {self.pos}.")

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _keyword(self, word: str) -> bool:
        self._skip()
        end = self.pos + len(word)
        if self.text[self.pos : end] == word and (
            end == len(self.text) or self.text[end].isspace() or self.text[end] == "("
        ):
            self.pos = end
            return True
        return False

    def _at_end_of_group(self) -> bool:
        self._skip()
        return self.pos >= len(self.text) or self.text[self.pos] == ")"

    def _expr(self):
        node = self._sequence()
        while self._keyword("AND"):
            node = ("and", node, self._sequence())
        return node

    def _sequence(self):
        node = self._factor()
        while not self._at_end_of_group():
            save = self.pos
            if self._keyword("AND"):
                self.pos = save
                break
            node = ("and", node, self._factor())
        return node

    def _factor(self):
        node = self._term()
        while self._keyword("OR"):
            node = ("or", node, self._term())
        return node

    def _term(self):
        self._skip()
        if self._keyword("NOT"):
            return ("not", self._simple())
        if self.text.startswith("-", self.pos):
            self.pos += 1
            return ("not", self._simple())
        return self._simple()

    def _simple(self):
        self._skip()
        if self.text.startswith("(", self.pos):
            self.pos += 1
            node = self._expr()
            self._skip()
            if not self.text.startswith(")", self.pos):
                raise invalid(f"Invalid filter {self.text!r}: missing ')'.")
            self.pos += 1
            return node
        m = _RESTRICTION.match(self.text, self.pos)
        if not m:
            raise invalid(f"Invalid filter {self.text!r}: expected field, operator and value at position {self.pos}.")
        self.pos = m.end()
        fld, op, val = m.group("field"), m.group("op"), m.group("val")
        if val.startswith('"'):
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        root = fld.split(".", 1)[0]
        if fld not in self.fields and not (root in ("labels", "annotations") and root in self.fields and "." in fld):
            raise invalid(f"Invalid filter {self.text!r}: unsupported field {fld!r}.")
        return ("cmp", fld, op, val)

    def matches(self, resolve) -> bool:
        return self.tree is None or self._eval(self.tree, resolve)

    def _eval(self, node, resolve) -> bool:
        kind = node[0]
        if kind == "and":
            return self._eval(node[1], resolve) and self._eval(node[2], resolve)
        if kind == "or":
            return self._eval(node[1], resolve) or self._eval(node[2], resolve)
        if kind == "not":
            return not self._eval(node[1], resolve)
        _, fld, op, val = node
        return compare(resolve(fld), op, val, fld)


def _text_match(actual: str, pattern: str) -> bool:
    if "*" in pattern:
        return fnmatch.fnmatchcase(actual, f"*{pattern}*")
    return pattern in actual


def _parse_time(value: str, fld: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"Invalid filter: {fld} needs an RFC 3339 timestamp, got {value!r}.") from None


def compare(actual, op: str, val: str, fld: str) -> bool:
    """actual: None (absent), str, datetime, dict (map field) or list of str."""
    if op == ":" and val == "*":
        return actual is not None and actual != {} and actual != []  # "" is a value
    if isinstance(actual, dict):  # `labels:KEY` (has key)
        if op != ":":
            raise invalid(f"Invalid filter: only ':' applies to map field {fld!r}.")
        return val in actual
    if isinstance(actual, list):
        return any(compare(a, op, val, fld) for a in actual)
    if isinstance(actual, datetime) or fld.endswith("_time"):
        if actual is None:
            return op == "!="
        when = _parse_time(val, fld)
        return {
            "=": actual == when,
            ":": actual == when,
            "!=": actual != when,
            "<": actual < when,
            "<=": actual <= when,
            ">": actual > when,
            ">=": actual >= when,
        }[op]
    if actual is None:
        return op == "!="
    if op == "=":
        return actual == val
    if op == "!=":
        return actual != val
    if op == ":":
        return _text_match(actual, val)
    raise invalid(f"Invalid filter: operator {op!r} does not apply to field {fld!r}.")


SECRET_FILTER_FIELDS = (
    "name",
    "labels",
    "annotations",
    "create_time",
    "expire_time",
    "replication.automatic",
    "replication.user_managed",
    "replication.user_managed.replicas.location",
    "topics.name",
)
VERSION_FILTER_FIELDS = ("name", "state", "create_time", "destroy_time")


# --- pagination --------------------------------------------------------------------------------


def page_size(requested: int, default: int) -> int:
    if requested < 0:
        raise invalid("page_size must not be negative.")
    return min(requested or default, MAX_PAGE_SIZE)


def encode_token(cursor, flt: str) -> str:
    raw = json.dumps({"c": cursor, "f": hashlib.sha256(flt.encode()).hexdigest()[:16]})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, flt: str):
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor, fhash = data["c"], data["f"]
    except Exception:
        raise invalid("Invalid page_token.") from None
    if fhash != hashlib.sha256(flt.encode()).hexdigest()[:16]:
        raise invalid("Invalid page_token: it was issued for a different filter.")
    return cursor


# --- the service -------------------------------------------------------------------------------


class SecretManager:
    def __init__(self, store: Store, default_page_size: int) -> None:
        self.store = store
        self.default_page_size = default_page_size

    # responses
    def _secret_msg(self, number: str, rec: SecretRec) -> resources.Secret:
        out = resources.Secret.deserialize(resources.Secret.serialize(rec.stored))
        out.name = self.store.secret_name(number, rec.secret_id)
        out.create_time = rec.create_time
        out.etag = rec.etag
        return out

    def _version_msg(self, number: str, rec: SecretRec, v: VersionRec) -> resources.SecretVersion:
        msg = resources.SecretVersion(
            name=f"{self.store.secret_name(number, rec.secret_id)}/versions/{v.number}",
            create_time=v.create_time,
            state=v.state,
            etag=v.etag,
            client_specified_payload_checksum=v.client_checksum,
        )
        if v.destroy_time is not None:
            msg.destroy_time = v.destroy_time
        kind = resources.Replication.pb(rec.stored.replication).WhichOneof("replication")
        if kind == "automatic":
            msg.replication_status = resources.ReplicationStatus(automatic={})
        else:
            msg.replication_status = resources.ReplicationStatus(
                user_managed={
                    "replicas": [{"location": r.location} for r in rec.stored.replication.user_managed.replicas]
                }
            )
        return msg

    def _resolve(self, name: str, *, access: bool) -> tuple[str, SecretRec, VersionRec]:
        project, secret_id, vid = parse_version(name)
        number, rec = self.store.lookup(project, secret_id)
        secret_name = self.store.secret_name(number, secret_id)
        if vid == "latest":
            if not rec.versions:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"Secret [{secret_name}] not found or has no versions.")
            v = rec.versions[max(rec.versions)]
        elif vid.isdigit():
            v = rec.versions.get(int(vid))
            if v is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"Secret Version [{secret_name}/versions/{vid}] not found.")
        else:
            target = rec.stored.version_aliases.get(vid)
            if target is None or target not in rec.versions:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"Secret Version [{secret_name}/versions/{vid}] not found.")
            v = rec.versions[target]
        if access and v.state != ENABLED:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Secret Version [{secret_name}/versions/{v.number}] is in "
                f"{resources.SecretVersion.State(v.state).name} state.",
            )
        return number, rec, v

    # RPCs
    def CreateSecret(self, req: service.CreateSecretRequest):
        project = parse_project(req.parent)
        if not SECRET_ID_RE.fullmatch(req.secret_id):
            raise invalid(
                f"Invalid secret_id {req.secret_id!r}: it must be 1-255 characters of letters, digits, '-' and '_'."
            )
        secret = req.secret
        validate_replication(secret)
        validate_labels(dict(secret.labels))
        validate_annotations(dict(secret.annotations))
        validate_topics(secret)
        if secret.version_aliases:
            validate_aliases(dict(secret.version_aliases), {})
        number, secrets = self.store.project(project)
        existing = secrets.get(req.secret_id)
        if existing is not None and not existing.expired():
            raise ApiError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"Secret [{self.store.secret_name(number, req.secret_id)}] already exists.",
            )
        stored = resources.Secret.deserialize(resources.Secret.serialize(secret))
        for out_only in ("name", "create_time", "etag", "policy_member"):
            setattr(stored, out_only, None)
        self._apply_ttl(stored)
        rec = SecretRec(req.secret_id, stored, now(), new_etag())
        secrets[req.secret_id] = rec
        return self._secret_msg(number, rec)

    @staticmethod
    def _apply_ttl(stored: resources.Secret) -> None:
        pb = resources.Secret.pb(stored)
        if pb.WhichOneof("expiration") == "ttl":
            ttl = timedelta(seconds=pb.ttl.seconds, microseconds=pb.ttl.nanos // 1000)
            if ttl <= timedelta(0):
                raise invalid("Secret.ttl must be positive.")
            stored.expire_time = now() + ttl  # clears ttl (same oneof)

    def GetSecret(self, req: service.GetSecretRequest):
        number, rec = self.store.lookup(*parse_secret(req.name))
        return self._secret_msg(number, rec)

    def ListSecrets(self, req: service.ListSecretsRequest):
        project = parse_project(req.parent)
        size = page_size(req.page_size, self.default_page_size)
        flt = Filter(req.filter, SECRET_FILTER_FIELDS)
        cursor = decode_token(req.page_token, req.filter)
        number, secrets = self.store.project(project)
        for sid in [s for s, r in secrets.items() if r.expired()]:
            del secrets[sid]
        matched = []
        for sid in sorted(secrets):
            rec = secrets[sid]
            full = self.store.secret_name(number, sid)
            if flt.matches(lambda f, rec=rec, full=full: self._secret_field(rec, full, f)):
                matched.append(sid)
        total = 0 if req.filter else len(matched)
        if cursor is not None:
            matched = [s for s in matched if s > cursor]
        page, rest = matched[:size], matched[size:]
        return service.ListSecretsResponse(
            secrets=[self._secret_msg(number, secrets[s]) for s in page],
            next_page_token=encode_token(page[-1], req.filter) if rest else "",
            total_size=total,
        )

    @staticmethod
    def _secret_field(rec: SecretRec, full: str, fld: str):
        s = rec.stored
        if fld == "name":
            return full
        if fld == "labels":
            return dict(s.labels)
        if fld == "annotations":
            return dict(s.annotations)
        if fld.startswith("labels."):
            return s.labels.get(fld[7:])
        if fld.startswith("annotations."):
            return s.annotations.get(fld[12:])
        if fld == "create_time":
            return rec.create_time
        if fld == "expire_time":
            pb = resources.Secret.pb(s)
            return pb.expire_time.ToDatetime(UTC) if pb.HasField("expire_time") else None
        kind = resources.Replication.pb(s.replication).WhichOneof("replication")
        if fld == "replication.automatic":
            return "automatic" if kind == "automatic" else None
        if fld == "replication.user_managed":
            return "user_managed" if kind == "user_managed" else None
        if fld == "replication.user_managed.replicas.location":
            return [r.location for r in s.replication.user_managed.replicas] or None
        if fld == "topics.name":
            return [t.name for t in s.topics] or None
        raise invalid(f"Invalid filter: unsupported field {fld!r}.")

    def UpdateSecret(self, req: service.UpdateSecretRequest):
        number, rec = self.store.lookup(*parse_secret(req.secret.name))
        paths = list(req.update_mask.paths) if "update_mask" in req else []
        if not paths:
            raise invalid("update_mask is required and must name at least one field.")
        if paths == ["*"]:
            paths = sorted(MUTABLE_PATHS - {"ttl", "expire_time"})
        for p in paths:
            if p in IMMUTABLE_PATHS:
                raise invalid(f"Field {p!r} cannot be updated (immutable or output only).")
            if p not in MUTABLE_PATHS:
                raise invalid(f"Invalid update_mask path {p!r}.")
        check_etag(req.secret.etag, rec.etag)
        new = req.secret
        if "labels" in paths:
            validate_labels(dict(new.labels))
        if "annotations" in paths:
            validate_annotations(dict(new.annotations))
        if "version_aliases" in paths:
            validate_aliases(dict(new.version_aliases), rec.versions)
        stored = resources.Secret.deserialize(resources.Secret.serialize(rec.stored))
        for p in paths:
            if p in ("labels", "annotations", "version_aliases"):
                setattr(stored, p, dict(getattr(new, p)))
            elif p == "topics":
                stored.topics = list(new.topics)
            elif p in ("ttl", "expire_time"):
                src = resources.Secret.pb(new)
                if src.WhichOneof("expiration") == p:
                    setattr(stored, p, getattr(new, p))
                else:
                    stored.expire_time = None
            else:
                setattr(stored, p, getattr(new, p) if p in new else None)
        validate_topics(stored)
        self._apply_ttl(stored)
        rec.stored = stored
        rec.etag = new_etag()
        return self._secret_msg(number, rec)

    def DeleteSecret(self, req: service.DeleteSecretRequest):
        project, secret_id = parse_secret(req.name)
        number, rec = self.store.lookup(project, secret_id)
        check_etag(req.etag, rec.etag)
        del self.store.projects[number][secret_id]
        return None

    def AddSecretVersion(self, req: service.AddSecretVersionRequest):
        number, rec = self.store.lookup(*parse_secret(req.parent))
        if "payload" not in req:
            raise invalid("payload is required.")
        data = req.payload.data
        if len(data) > MAX_PAYLOAD:
            raise invalid(f"Secret payload is {len(data)} bytes; it cannot be larger than 65536 bytes (64KiB).")
        given = "data_crc32c" in req.payload
        actual = crc32c(data)
        if given and (req.payload.data_crc32c & 0xFFFFFFFF) != actual:
            raise invalid(
                "Checksum mismatch: data_crc32c does not match the payload data; the "
                "data may have been corrupted in transit."
            )
        v = VersionRec(rec.next_version, data, actual, given, now(), new_etag())
        rec.versions[v.number] = v
        rec.next_version += 1
        return self._version_msg(number, rec, v)

    def GetSecretVersion(self, req: service.GetSecretVersionRequest):
        number, rec, v = self._resolve(req.name, access=False)
        return self._version_msg(number, rec, v)

    def AccessSecretVersion(self, req: service.AccessSecretVersionRequest):
        number, rec, v = self._resolve(req.name, access=True)
        return service.AccessSecretVersionResponse(
            name=f"{self.store.secret_name(number, rec.secret_id)}/versions/{v.number}",
            payload=resources.SecretPayload(data=v.data, data_crc32c=v.crc32c),
        )

    def ListSecretVersions(self, req: service.ListSecretVersionsRequest):
        number, rec = self.store.lookup(*parse_secret(req.parent))
        size = page_size(req.page_size, self.default_page_size)
        flt = Filter(req.filter, VERSION_FILTER_FIELDS)
        cursor = decode_token(req.page_token, req.filter)
        base = self.store.secret_name(number, rec.secret_id)
        matched = []
        for n in sorted(rec.versions, reverse=True):
            v = rec.versions[n]
            if flt.matches(lambda f, v=v: self._version_field(v, base, f)):
                matched.append(n)
        total = 0 if req.filter else len(matched)
        if cursor is not None:
            matched = [n for n in matched if n < cursor]
        page, rest = matched[:size], matched[size:]
        return service.ListSecretVersionsResponse(
            versions=[self._version_msg(number, rec, rec.versions[n]) for n in page],
            next_page_token=encode_token(page[-1], req.filter) if rest else "",
            total_size=total,
        )

    @staticmethod
    def _version_field(v: VersionRec, base: str, fld: str):
        if fld == "state":
            return resources.SecretVersion.State(v.state).name
        if fld == "name":
            return f"{base}/versions/{v.number}"
        if fld == "create_time":
            return v.create_time
        if fld == "destroy_time":
            return v.destroy_time
        raise invalid(f"Invalid filter: unsupported field {fld!r}.")

    def _transition(self, name: str, etag: str, target: int):
        number, rec, v = self._resolve(name, access=False)
        check_etag(etag, v.etag)
        if v.state == DESTROYED:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Secret Version [{self.store.secret_name(number, rec.secret_id)}"
                f"/versions/{v.number}] is in DESTROYED state.",
            )
        v.state = target
        v.etag = new_etag()
        if target == DESTROYED:
            v.data = None
            v.destroy_time = now()
        return self._version_msg(number, rec, v)

    def EnableSecretVersion(self, req: service.EnableSecretVersionRequest):
        return self._transition(req.name, req.etag, ENABLED)

    def DisableSecretVersion(self, req: service.DisableSecretVersionRequest):
        return self._transition(req.name, req.etag, DISABLED)

    def DestroySecretVersion(self, req: service.DestroySecretVersionRequest):
        return self._transition(req.name, req.etag, DESTROYED)


METHODS = {
    "ListSecrets": (service.ListSecretsRequest, service.ListSecretsResponse),
    "CreateSecret": (service.CreateSecretRequest, resources.Secret),
    "AddSecretVersion": (service.AddSecretVersionRequest, resources.SecretVersion),
    "GetSecret": (service.GetSecretRequest, resources.Secret),
    "UpdateSecret": (service.UpdateSecretRequest, resources.Secret),
    "DeleteSecret": (service.DeleteSecretRequest, None),  # google.protobuf.Empty
    "ListSecretVersions": (service.ListSecretVersionsRequest, service.ListSecretVersionsResponse),
    "GetSecretVersion": (service.GetSecretVersionRequest, resources.SecretVersion),
    "AccessSecretVersion": (service.AccessSecretVersionRequest, service.AccessSecretVersionResponse),
    "DisableSecretVersion": (service.DisableSecretVersionRequest, resources.SecretVersion),
    "EnableSecretVersion": (service.EnableSecretVersionRequest, resources.SecretVersion),
    "DestroySecretVersion": (service.DestroySecretVersionRequest, resources.SecretVersion),
}


_PROJECT_IDS: dict[str, str] = {}  # project number -> the id clients used for it


def request_secret(method: str, req) -> str | None:
    """The secret a write names (projects/P/secrets/S), for the per-secret write counts."""
    if method == "CreateSecret":
        return f"{req.parent}/secrets/{req.secret_id}"
    name = req.secret.name if method == "UpdateSecret" else (getattr(req, "parent", None) or getattr(req, "name", None))
    m = re.match(r"projects/[^/]+/secrets/[^/]+", name or "")
    return m.group(0) if m else None


def request_project(method: str, req) -> str | None:
    """The project a request is billed to (for quotas and per-project counts), spelled as
    the project id when a client has used the id, whether this request used id or number."""
    name = getattr(req, "parent", None) or getattr(req, "name", None)
    if method == "UpdateSecret":
        name = req.secret.name
    m = re.match(r"projects/([^/]+)", name or "")
    if not m:
        return None
    project, number = m.group(1), project_number(m.group(1))
    if not project.isdigit():
        _PROJECT_IDS.setdefault(number, project)
    return _PROJECT_IDS.get(number, project)


# --- quotas and statistics -------------------------------------------------------------------


class Quotas:
    def __init__(self, limits: dict[str, int | None], window: float = 60.0) -> None:
        self.limits = limits
        self.window = window
        self.lock = threading.Lock()
        self.log: dict[tuple[str, str], collections.deque] = collections.defaultdict(collections.deque)

    def admit(self, project: str | None, kind: str) -> int | None:
        """Record the call and return None, or return the limit it would exceed."""
        limit = self.limits.get(kind)
        if not limit or project is None:
            return None
        with self.lock:
            q = self.log[(project_number(project), kind)]
            t = time.monotonic()
            while q and q[0] <= t - self.window:
                q.popleft()
            if len(q) >= limit:
                return limit
            q.append(t)
            return None


class Stats:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        # admitted writes: per secret (name without the project) and per wall-clock second, per project
        self.writes_by_secret: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.writes_per_second: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.calls: collections.Counter = collections.Counter()
        self.errors: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.by_project: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.started = time.time()

    def record(self, method: str, project: str | None, code: grpc.StatusCode | None, secret: str | None = None) -> None:
        with self.lock:
            if code is None and project is not None and QUOTA_KIND.get(method) == "write":
                self.writes_per_second[project][int(time.time())] += 1
                if secret:
                    self.writes_by_secret[project][secret.rsplit("/", 1)[-1]] += 1
            self.calls[method] += 1
            if project is not None:
                self.by_project[project][method] += 1
            if code is not None:
                self.errors[method][code.name] += 1
            if self.path:
                self._write()

    def snapshot(self) -> dict:
        return {
            "calls": dict(self.calls),
            "total": sum(self.calls.values()),
            "errors": {m: dict(c) for m, c in self.errors.items()},
            "by_project": {p: dict(c) for p, c in self.by_project.items()},
            "writes_by_secret": {p: dict(c) for p, c in self.writes_by_secret.items()},
            "writes_per_second": {
                p: {str(k): v for k, v in sorted(c.items())} for p, c in self.writes_per_second.items()
            },
            "since": self.started,
        }

    def _write(self) -> None:
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(self.snapshot(), fh)
        os.replace(tmp, self.path)

    def flush(self) -> None:
        with self.lock:
            if self.path:
                self._write()


def _status_details(err: ApiError) -> grpc.Status:
    details = []
    for d in err.details:
        packed = any_pb2.Any()
        packed.Pack(d)
        details.append(packed)
    return rpc_status.to_status(status_pb2.Status(code=err.code.value[0], message=err.message, details=details))


class Faults:
    """Seeded fault injection (--fault-rate): a share of the API calls (never Admin calls) is
    answered UNAVAILABLE or RESOURCE_EXHAUSTED before anything is done, as a loaded service does.
    Admin/SetFaults changes the rate while the emulator runs (tests turn faults off to check)."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate, self.rng, self.lock, self.injected = rate, random.Random(seed), threading.Lock(), 0

    def draw(self) -> ApiError | None:
        with self.lock:
            if self.rate <= 0 or self.rng.random() >= self.rate:
                return None
            self.injected += 1
            unavailable = self.rng.random() < 0.5
        if unavailable:
            return ApiError(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.")
        return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, "Resource has been exhausted (e.g. check quota).")


def build_server(args) -> tuple[grpc.Server, int, Stats]:
    store = Store(ids_in_names=args.project_ids_in_names)
    faults = Faults(getattr(args, "fault_rate", 0.0) or 0.0, getattr(args, "fault_seed", 0) or 0)
    api = SecretManager(store, args.default_page_size)
    quotas = Quotas(
        {
            "write": args.write_quota_per_minute,
            "read": args.read_quota_per_minute,
            "access": args.access_quota_per_minute,
        },
        args.quota_window_seconds,
    )
    stats = Stats(args.stats_file)
    latency = (getattr(args, "latency_ms", 0.0) or 0.0) / 1000.0

    def make(method: str, req_cls, resp_cls):
        impl = getattr(api, method)
        kind = QUOTA_KIND[method]

        def handler(request, context):
            project = None
            if latency > 0:
                time.sleep(latency)  # the network's share of a real call
            try:
                project = request_project(method, request)
                fault = faults.draw()
                if fault is not None:
                    raise fault
                limit = quotas.admit(project, kind)
                if limit is not None:
                    qname = QUOTA_NAMES[kind]
                    raise ApiError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"Quota exceeded for quota metric '{qname}' and limit '{qname} per "
                        f"minute' of service 'secretmanager.googleapis.com' for consumer "
                        f"'project_number:{project_number(project)}'.",
                        [
                            error_details_pb2.ErrorInfo(
                                reason="RATE_LIMIT_EXCEEDED",
                                domain="googleapis.com",
                                metadata={
                                    "service": "secretmanager.googleapis.com",
                                    "consumer": f"projects/{project_number(project)}",
                                    "quota_limit_value": str(limit),
                                    "quota_metric": f"secretmanager.googleapis.com/{kind}_requests",
                                },
                            )
                        ],
                    )
                with store.lock:
                    result = impl(request)
            except ApiError as err:
                stats.record(method, project, err.code)
                context.abort_with_status(_status_details(err))
            except Exception as exc:  # a bug here must not look like a server hang
                stats.record(method, project, grpc.StatusCode.INTERNAL)
                context.abort(grpc.StatusCode.INTERNAL, f"emulator error: {exc!r}")
            stats.record(method, project, None, request_secret(method, request))
            return result

        return grpc.unary_unary_rpc_method_handler(
            handler,
            request_deserializer=req_cls.deserialize,
            response_serializer=(resp_cls.serialize if resp_cls else (lambda _: b"")),
        )

    handlers = {m: make(m, req, resp) for m, (req, resp) in METHODS.items()}

    def admin(fn):
        def handler(request, context):
            return json.dumps(fn()).encode()

        return grpc.unary_unary_rpc_method_handler(handler)

    def reset_stats():
        with stats.lock:
            stats.reset()
        stats.flush()
        return {"reset": "stats"}

    def reset_all():
        with store.lock:
            store.projects.clear()
        with quotas.lock:
            quotas.log.clear()
        return reset_stats() | {"reset": "all"}

    def set_faults(request: bytes) -> dict:
        with faults.lock:
            faults.rate = float(json.loads(request or b"{}").get("rate", 0.0))
            return {"rate": faults.rate, "injected": faults.injected}

    def admin_in(fn):
        def handler(request, context):
            return json.dumps(fn(request)).encode()

        return grpc.unary_unary_rpc_method_handler(handler)

    admin_handlers = {
        "SetFaults": admin_in(set_faults),
        "GetStats": admin(lambda: stats.snapshot()),
        "ResetStats": admin(reset_stats),
        "Reset": admin(reset_all),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(SERVICE, handlers),
            grpc.method_handlers_generic_handler(ADMIN_SERVICE, admin_handlers),
        )
    )
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        raise SystemExit(f"cannot bind {args.host}:{args.port}")
    return server, port, stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="0 picks a free port")
    p.add_argument(
        "--write-quota-per-minute",
        type=int,
        default=None,
        help="per project; the real default is 600 (off unless given)",
    )
    p.add_argument(
        "--read-quota-per-minute",
        type=int,
        default=None,
        help="per project; the real default is 600 (off unless given)",
    )
    p.add_argument(
        "--access-quota-per-minute",
        type=int,
        default=None,
        help="per project; the real default is 90000 (off unless given)",
    )
    p.add_argument(
        "--quota-window-seconds",
        type=float,
        default=60.0,
        help="length of the sliding quota window (tests may shorten it)",
    )
    p.add_argument(
        "--default-page-size",
        type=int,
        default=MAX_PAGE_SIZE,
        help="page size used when a list request leaves page_size at 0",
    )
    p.add_argument("--stats-file", default=None, help="rewrite per-method call counts (JSON) here after every call")
    p.add_argument(
        "--project-ids-in-names",
        action="store_true",
        help="answer with projects/<id>/... instead of projects/<number>/...",
    )
    p.add_argument("--workers", type=int, default=16)
    p.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="added to every API call (not Admin): a network's round trip, for benchmarks",
    )
    p.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="share of API calls answered UNAVAILABLE or RESOURCE_EXHAUSTED (seeded; Admin/SetFaults changes it)",
    )
    p.add_argument("--fault-seed", type=int, default=0)
    args = p.parse_args(argv)

    server, port, stats = build_server(args)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"READY port={port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(grace=0.2).wait()
    stats.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
