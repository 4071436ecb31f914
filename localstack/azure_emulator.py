#!/usr/bin/env python3
"""Azure Key Vault (secrets data plane) emulator, served over HTTPS.

Run:  .venv/bin/python localstack/azure_emulator.py --port 8443 --state-dir .emulators/azure
      [--host 127.0.0.1] [--throttle-per-10s T] [--throttle-window S] [--retention-days D]
      [--delete-latency S] [--latency-ms MS] [--tenant-id GUID] [--accept-any-token]

At start it creates (or reuses, when present in --state-dir) a CA and a server certificate for
127.0.0.1/localhost, writes the CA to DIR/ca.pem and prints one line, then serves:

    READY https://127.0.0.1:PORT ca=DIR/ca.pem

Clients: vault URL https://127.0.0.1:PORT, verify_challenge_resource=False, and trust DIR/ca.pem.
DefaultAzureCredential gets tokens here with IDENTITY_ENDPOINT=https://127.0.0.1:PORT/msi/token and
IDENTITY_HEADER=<anything> (App Service managed identity); it must trust the CA for that call too:
DefaultAzureCredential(connection_verify=DIR/ca.pem), or REQUESTS_CA_BUNDLE=DIR/ca.pem for both.

What is emulated (shapes follow the 2025-07-01 OpenAPI description of the secrets API):
  PUT/GET/PATCH/DELETE /secrets/..., GET /secrets, GET /secrets/{name}/versions, soft delete with
  /deletedsecrets (get, list, recover, purge), challenge auth (401 + WWW-Authenticate), the App
  Service managed-identity token route GET /msi/token, the 25,600-character value limit, the name
  rule, 409 on a soft-deleted name, 403 on a disabled secret, optional 429 throttling with
  Retry-After. Names are case-insensitive like the real service. State is in memory only.
  Tokens: only bearer tokens issued by this process's /msi/token are accepted (HMAC-signed JWTs
  with aud https://vault.azure.net), unless --accept-any-token is given.
  Certificates (shapes of the 2025-07-01 certificates description): POST /certificates/{name}/import
  (PFX, or PEM with a PKCS#8 key when the policy says application/x-pem-file; a new version each
  time), GET /certificates/{name}[/{version}], PATCH (tags, enabled), GET /certificates,
  GET .../versions, GET .../policy, DELETE with /deletedcertificates (get, list, recover, purge).
  Not emulated: create/merge/pending operations, issuers, contacts, backup/restore, and the key and
  secret that back a real certificate (their ids are returned, their routes do not serve them).

Not part of the Key Vault API (emulator only):
  GET    /_emulator/stats   per-operation request counts, by HTTP status (JSON, no auth)
  DELETE /_emulator/stats   reset the counts
The stats also hold `writes_by_secret` (admitted SetSecret/UpdateSecret/DeleteSecret per name),
`calls_by_secret` (every call that names a secret or certificate, per name and operation; for tests
that share the emulator) and `per_second` (admitted transactions, the quota's unit, per wall-clock
second). --latency-ms delays every vault call (a network's round trip, for benchmarks).
Counts use the OpenAPI operationIds (SetSecret, GetSecret, ...); every request to a vault route is
counted, including 401 challenges and 429 throttles (see by_status), plus ManagedIdentityToken.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import secrets as _secrets
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable
from urllib.parse import quote

VAULT_RESOURCE = "https://vault.azure.net"
DEFAULT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
MAX_VALUE_CHARS = 25_600  # the service's message says "characters"
MAX_TAGS = 15
MAX_CONTENT_TYPE = 255
DEFAULT_PAGE = 25
API_VERSION_RE = re.compile(r"^(\d+\.\d+|\d{4}-\d{2}-\d{2})(-preview)?$")
NOT_FOUND_HINT = (
    "If you recently deleted this secret you may be able to recover it using the correct "
    "recovery command. For help resolving this issue, please see "
    "https://go.microsoft.com/fwlink/?linkid=2125182"
)


# --- errors --------------------------------------------------------------------------------------


class KVError(Exception):
    def __init__(
        self, status: int, code: str, message: str, inner: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            err["innererror"] = {"code": self.inner}
        return {"error": err}


def bad(message: str, inner: str | None = None) -> KVError:
    return KVError(400, "BadParameter", message, inner)


def secret_not_found(name: str, version: str | None = None, noun: str = "Secret") -> KVError:
    nid = f"{name}/{version}" if version else name
    hint = NOT_FOUND_HINT.replace("secret", noun.lower())
    return KVError(
        404, f"{noun}NotFound", f"A {noun.lower()} with (name/id) {nid} was not found in this key vault. {hint}"
    )


def deleted_not_found(name: str, noun: str = "Secret") -> KVError:
    return KVError(404, f"{noun}NotFound", f"Deleted {noun} not found: {name}")


# --- state ---------------------------------------------------------------------------------------


@dataclass
class Version:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool
    nbf: int | None
    exp: int | None
    created: int
    updated: int
    extra: dict[str, Any] = field(default_factory=dict)  # certificates: x5t, policy


@dataclass
class Secret:
    name: str  # casing of the first write
    versions: dict[str, Version] = field(default_factory=dict)  # creation order
    latest: str = ""
    deleted_date: int | None = None
    scheduled_purge: int | None = None


class Vault:
    """All secrets (or, with noun="Certificate", all certificates) of one vault. Every method takes
    the lock; handlers do no I/O under it."""

    def __init__(self, retention_days: int, delete_latency: float, noun: str = "Secret") -> None:
        self.noun = noun
        self.lock = threading.Lock()
        self.live: dict[str, Secret] = {}
        self.deleted: dict[str, Secret] = {}
        self.transitions: dict[str, tuple[float, str]] = {}  # name -> (until, "deleted"|"recovered")
        self.retention_days = retention_days
        self.delete_latency = delete_latency

    @property
    def recovery_level(self) -> str:
        return "Recoverable+Purgeable" if self.retention_days == 90 else "CustomizedRecoverable+Purgeable"

    # internal helpers (call with the lock held)
    def _expire(self, now: float) -> None:
        for key in [k for k, s in self.deleted.items() if s.scheduled_purge and s.scheduled_purge <= now]:
            del self.deleted[key]
        for key in [k for k, (until, _) in self.transitions.items() if until <= now]:
            del self.transitions[key]

    def _busy(self, name: str) -> None:
        """While a delete/recover/purge is in progress the name is neither live nor deleted."""
        t = self.transitions.get(name.lower())
        if t:
            raise KVError(409, "Conflict", f"{self.noun} {name} is currently being {t[1]}.")

    def _hidden(self, name: str) -> bool:
        return name.lower() in self.transitions

    def _transition(self, name: str, verb: str) -> None:
        if self.delete_latency > 0:
            self.transitions[name.lower()] = (time.time() + self.delete_latency, verb)

    def _live(self, name: str) -> Secret:
        s = self.live.get(name.lower())
        if s is None or self._hidden(name):
            raise secret_not_found(name, noun=self.noun)
        return s

    def _gone(self, name: str) -> Secret:
        s = self.deleted.get(name.lower())
        if s is None or self._hidden(name):
            raise deleted_not_found(name, self.noun)
        return s

    # operations
    def set(
        self, name: str, value: str, content_type: str | None, tags: dict[str, str] | None, attrs: dict[str, Any]
    ) -> tuple[Secret, Version]:
        now = int(time.time())
        with self.lock:
            self._expire(now)
            self._busy(name)
            if name.lower() in self.deleted:
                raise KVError(
                    409,
                    "Conflict",
                    f"{self.noun} {name} is currently in a deleted but recoverable state, and its name "
                    f"cannot be reused; in this state, the {self.noun.lower()} can only be recovered or "
                    "purged.",
                    "ObjectIsDeletedButRecoverable",
                )
            s = self.live.setdefault(name.lower(), Secret(name=name))
            v = Version(
                version=uuid.uuid4().hex,
                value=value,
                content_type=content_type,
                tags=tags,
                enabled=attrs.get("enabled", True) is not False,
                nbf=attrs.get("nbf"),
                exp=attrs.get("exp"),
                created=now,
                updated=now,
            )
            s.versions[v.version] = v
            s.latest = v.version
            return s, v

    def get(self, name: str, version: str = "") -> tuple[Secret, Version]:
        with self.lock:
            self._expire(time.time())
            s = self._live(name)
            v = s.versions.get(version or s.latest)
            if v is None:
                raise secret_not_found(name, version, self.noun)
            return s, v

    def update(
        self,
        name: str,
        version: str,
        content_type: str | None,
        tags: dict[str, str] | None,
        attrs: dict[str, Any] | None,
    ) -> tuple[Secret, Version]:
        with self.lock:
            self._expire(time.time())
            s = self._live(name)
            v = s.versions.get(version or s.latest)
            if v is None:
                raise secret_not_found(name, version, self.noun)
            if content_type is not None:
                v.content_type = content_type
            if tags is not None:
                v.tags = tags
            for key in ("nbf", "exp"):
                if attrs and key in attrs:
                    setattr(v, key, attrs[key])
            if attrs and attrs.get("enabled") is not None:
                v.enabled = bool(attrs["enabled"])
            v.updated = int(time.time())
            return s, v

    def list_live(self) -> list[Secret]:
        with self.lock:
            self._expire(time.time())
            return [s for k, s in sorted(self.live.items()) if k not in self.transitions]

    def list_versions(self, name: str) -> list[tuple[Secret, Version]]:
        with self.lock:
            self._expire(time.time())
            s = self.live.get(name.lower())
            if s is None or self._hidden(name):
                return []
            return [(s, v) for v in s.versions.values()]

    def delete(self, name: str) -> Secret:
        now = int(time.time())
        with self.lock:
            self._expire(now)
            self._busy(name)
            s = self._live(name)
            del self.live[name.lower()]
            s.deleted_date = now
            s.scheduled_purge = now + self.retention_days * 86400
            self.deleted[name.lower()] = s
            self._transition(name, "deleted")
            return s

    def get_deleted(self, name: str) -> Secret:
        with self.lock:
            self._expire(time.time())
            return self._gone(name)

    def list_deleted(self) -> list[Secret]:
        with self.lock:
            self._expire(time.time())
            return [s for k, s in sorted(self.deleted.items()) if k not in self.transitions]

    def recover(self, name: str) -> Secret:
        with self.lock:
            self._expire(time.time())
            self._busy(name)
            s = self._gone(name)
            del self.deleted[name.lower()]
            s.deleted_date = s.scheduled_purge = None
            self.live[name.lower()] = s
            self._transition(name, "recovered")
            return s

    def purge(self, name: str) -> None:
        with self.lock:
            self._expire(time.time())
            self._busy(name)
            self._gone(name)
            del self.deleted[name.lower()]
            self._transition(name, "deleted")


# --- rendering (shapes of the OpenAPI definitions) -----------------------------------------------


def attributes(vault: Vault, v: Version) -> dict[str, Any]:
    a: dict[str, Any] = {"enabled": v.enabled}
    if v.nbf is not None:
        a["nbf"] = v.nbf
    if v.exp is not None:
        a["exp"] = v.exp
    a.update(
        created=v.created, updated=v.updated, recoverableDays=vault.retention_days, recoveryLevel=vault.recovery_level
    )
    return a


def item(vault: Vault, base: str, s: Secret, v: Version, *, versioned: bool) -> dict[str, Any]:
    """SecretItem (lists): no value."""
    d: dict[str, Any] = {
        "id": f"{base}/secrets/{s.name}" + (f"/{v.version}" if versioned else ""),
        "attributes": attributes(vault, v),
    }
    if v.tags is not None:
        d["tags"] = dict(v.tags)
    if v.content_type is not None:
        d["contentType"] = v.content_type
    return d


def bundle(vault: Vault, base: str, s: Secret, v: Version, *, value: bool) -> dict[str, Any]:
    """SecretBundle; the value only where the service returns it (set, get)."""
    d = item(vault, base, s, v, versioned=True)
    if value:
        d = {"value": v.value, **d}
    return d


def deleted_fields(base: str, s: Secret) -> dict[str, Any]:
    return {
        "recoveryId": f"{base}/deletedsecrets/{s.name}",
        "deletedDate": s.deleted_date,
        "scheduledPurgeDate": s.scheduled_purge,
    }


# --- certificates (shapes of the certificates OpenAPI description) -------------------------------

PEM_TYPE, PFX_TYPE = "application/x-pem-file", "application/x-pkcs12"


def parse_certificate_import(value: str, pwd: str | None, content_type: str) -> tuple[Any, list[Any]]:
    """(leaf, chain) from an ImportCertificate body: base64 PFX, or base64 PEM when the policy's
    secret_props.contentType says PEM (the key must be PKCS#8, as the service demands); the key
    must belong to the leaf. Raises 400 BadParameter otherwise."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs12

    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise bad("The certificate value is not valid base64.") from None
    try:
        if content_type == PEM_TYPE:
            text = raw.decode("ascii")
            if "-----BEGIN PRIVATE KEY-----" not in text:
                raise bad("The PEM file must contain the private key in PKCS#8 format.")
            key_pem = text[text.index("-----BEGIN PRIVATE KEY-----") : text.index("-----END PRIVATE KEY-----") + 25]
            key, certs = load_pem_private_key(key_pem.encode(), None), x509.load_pem_x509_certificates(raw)
        else:
            key, leaf, extra = pkcs12.load_key_and_certificates(raw, pwd.encode() if pwd else None)
            certs = [leaf, *extra] if leaf is not None else list(extra)
    except KVError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError):
        raise bad("The specified certificate content is in an unexpected format (or the password is wrong).") from None
    if key is None or not certs:
        raise bad("The certificate to import must contain the private key and the certificate.")
    leaf = next((c for c in certs if c.public_key() == key.public_key()), None)
    if leaf is None:
        raise bad("The private key does not match any certificate in the import.")
    return leaf, [c for c in certs if c is not leaf]


def certificate_policy(leaf: Any, content_type: str, now: int) -> dict[str, Any]:
    """The policy the service derives for an imported certificate (its id is added when rendered)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_props: dict[str, Any] = {"exportable": True, "kty": "RSA", "key_size": key.key_size, "reuse_key": False}
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name, "P-256")
        key_props = {"exportable": True, "kty": "EC", "key_size": key.curve.key_size, "crv": curve, "reuse_key": False}
    else:
        raise bad("Key Vault certificates hold RSA or EC keys only.")
    x509_props: dict[str, Any] = {"subject": leaf.subject.rfc4514_string()}
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        x509_props["sans"] = {"dns_names": sans.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        pass
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    x509_props["validity_months"] = max(1, round(lifetime.days / 30))
    return {
        "key_props": key_props,
        "secret_props": {"contentType": content_type},
        "x509_props": x509_props,
        "lifetime_actions": [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}],
        "issuer": {"name": "Unknown"},
        "attributes": {"enabled": True, "created": now, "updated": now},
    }


def cert_item(vault: Vault, base: str, s: Secret, v: Version, *, versioned: bool) -> dict[str, Any]:
    """CertificateItem (lists)."""
    d: dict[str, Any] = {
        "id": f"{base}/certificates/{s.name}" + (f"/{v.version}" if versioned else ""),
        "x5t": v.extra["x5t"],
        "attributes": attributes(vault, v),
    }
    if v.tags is not None:
        d["tags"] = dict(v.tags)
    return d


def cert_bundle(vault: Vault, base: str, s: Secret, v: Version) -> dict[str, Any]:
    """CertificateBundle: the X.509 certificate (cer, DER) with the ids of its key and secret."""
    d = cert_item(vault, base, s, v, versioned=True)
    d.update(
        kid=f"{base}/keys/{s.name}/{v.version}",
        sid=f"{base}/secrets/{s.name}/{v.version}",
        cer=v.value,
        contentType=v.content_type,
        policy={"id": f"{base}/certificates/{s.name}/policy", **v.extra["policy"]},
    )
    return d


def cert_deleted_fields(base: str, s: Secret) -> dict[str, Any]:
    return {
        "recoveryId": f"{base}/deletedcertificates/{s.name}",
        "deletedDate": s.deleted_date,
        "scheduledPurgeDate": s.scheduled_purge,
    }


# --- auth, throttling and counting ---------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    def __init__(self, tenant: str, accept_any: bool) -> None:
        self.key = _secrets.token_bytes(32)
        self.tenant = tenant
        self.accept_any = accept_any

    def issue(self, resource: str, lifetime: int = 3600) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "tid": self.tenant,
            "oid": str(uuid.uuid4()),
            "idtyp": "app",
        }
        head = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        body = _b64(json.dumps(claims).encode())
        sig = _b64(hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{sig}", now + lifetime

    def check(self, authorization: str | None) -> str | None:
        """None when accepted, else the reason for a 401."""
        if not authorization:
            return "AKV10000: Request is missing a Bearer or PoP token."
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "AKV10000: Request is missing a Bearer or PoP token."
        if self.accept_any:
            return None
        try:
            head, body, sig = token.strip().split(".")
            want = hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(_unb64(sig), want):
                return "AKV10032: Invalid issuer. The token was not issued by this emulator."
            claims = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return "AKV10001: Bearer token is malformed."
        if str(claims.get("aud", "")).rstrip("/") != VAULT_RESOURCE:
            return f"AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found: {claims.get('aud')}."
        if claims.get("exp", 0) < time.time():
            return "AKV10003: Token has expired."
        return None


class Throttle:
    """Sliding window: at most `limit` requests per `window` seconds, else 429 with Retry-After."""

    def __init__(self, limit: int | None, window: float) -> None:
        self.limit, self.window = limit, window
        self.stamps: collections.deque[float] = collections.deque()
        self.lock = threading.Lock()

    def retry_after(self) -> int | None:
        if not self.limit:
            return None
        now = time.monotonic()
        with self.lock:
            while self.stamps and self.stamps[0] <= now - self.window:
                self.stamps.popleft()
            if len(self.stamps) >= self.limit:
                return max(1, math.ceil(self.stamps[0] + self.window - now))
            self.stamps.append(now)
            return None


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    WRITES = frozenset(
        {"SetSecret", "UpdateSecret", "DeleteSecret", "ImportCertificate", "UpdateCertificate", "DeleteCertificate"}
    )

    def reset(self) -> None:
        with self.lock:
            self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
            self.writes_by_secret: collections.Counter[str] = collections.Counter()
            self.calls_by_secret: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
            self.per_second: collections.Counter[int] = collections.Counter()
            self.since = int(time.time())

    def add(self, op: str, status: int, name: str | None = None) -> None:
        with self.lock:
            self.counts[op][str(status)] += 1
            if name:
                self.calls_by_secret[name.lower()][op] += 1
            if status not in (401, 429) and op not in ("ManagedIdentityToken", "Unknown"):
                self.per_second[int(time.time())] += 1
                if op in self.WRITES and status < 300 and name:
                    self.writes_by_secret[name.lower()] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            ops = {
                op: {"total": sum(c.values()), "by_status": dict(sorted(c.items()))}
                for op, c in sorted(self.counts.items())
            }
            writes = dict(self.writes_by_secret)
            by_secret = {name: dict(ops) for name, ops in self.calls_by_secret.items()}
            per_second = {str(k): v for k, v in sorted(self.per_second.items())}
        return {
            "since": self.since,
            "total": sum(o["total"] for o in ops.values()),
            "operations": ops,
            "writes_by_secret": writes,
            "calls_by_secret": by_secret,
            "per_second": per_second,
        }


# --- routing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    method: str
    pattern: re.Pattern[str]
    operation_id: str
    spec_path: str  # the path template in the OpenAPI description
    handler: str  # method name on App
    api: str = "secrets"  # which OpenAPI description: secrets or certificates


def _op(method: str, regex: str, operation_id: str, spec_path: str, handler: str, api: str = "secrets") -> Op:
    return Op(method, re.compile(f"^{regex}$"), operation_id, spec_path, handler, api)


SEG = r"(?P<name>[^/]+)"
OPERATIONS: list[Op] = [
    _op("GET", r"/secrets", "GetSecrets", "/secrets", "get_secrets"),
    _op("PUT", rf"/secrets/{SEG}", "SetSecret", "/secrets/{secret-name}", "set_secret"),
    _op("DELETE", rf"/secrets/{SEG}", "DeleteSecret", "/secrets/{secret-name}", "delete_secret"),
    _op(
        "GET",
        rf"/secrets/{SEG}/versions",
        "GetSecretVersions",
        "/secrets/{secret-name}/versions",
        "get_secret_versions",
    ),
    # GET /secrets/{name} and /secrets/{name}/ both mean the latest version
    _op(
        "GET",
        rf"/secrets/{SEG}(?:/(?P<version>[^/]*))?",
        "GetSecret",
        "/secrets/{secret-name}/{secret-version}",
        "get_secret",
    ),
    _op(
        "PATCH",
        rf"/secrets/{SEG}/(?P<version>[^/]*)",
        "UpdateSecret",
        "/secrets/{secret-name}/{secret-version}",
        "update_secret",
    ),
    _op("GET", r"/deletedsecrets", "GetDeletedSecrets", "/deletedsecrets", "get_deleted_secrets"),
    _op("GET", rf"/deletedsecrets/{SEG}", "GetDeletedSecret", "/deletedsecrets/{secret-name}", "get_deleted_secret"),
    _op(
        "DELETE",
        rf"/deletedsecrets/{SEG}",
        "PurgeDeletedSecret",
        "/deletedsecrets/{secret-name}",
        "purge_deleted_secret",
    ),
    _op(
        "POST",
        rf"/deletedsecrets/{SEG}/recover",
        "RecoverDeletedSecret",
        "/deletedsecrets/{secret-name}/recover",
        "recover_deleted_secret",
    ),
    # certificates: what importing one and managing its versions and soft delete take
    _op("GET", r"/certificates", "GetCertificates", "/certificates", "get_certificates", "certificates"),
    _op(
        "DELETE",
        rf"/certificates/{SEG}",
        "DeleteCertificate",
        "/certificates/{certificate-name}",
        "delete_certificate",
        "certificates",
    ),
    _op(
        "POST",
        rf"/certificates/{SEG}/import",
        "ImportCertificate",
        "/certificates/{certificate-name}/import",
        "import_certificate",
        "certificates",
    ),
    _op(
        "GET",
        rf"/certificates/{SEG}/versions",
        "GetCertificateVersions",
        "/certificates/{certificate-name}/versions",
        "get_certificate_versions",
        "certificates",
    ),
    _op(
        "GET",
        rf"/certificates/{SEG}/policy",
        "GetCertificatePolicy",
        "/certificates/{certificate-name}/policy",
        "get_certificate_policy",
        "certificates",
    ),
    _op(
        "GET",
        rf"/certificates/{SEG}(?:/(?P<version>[^/]*))?",
        "GetCertificate",
        "/certificates/{certificate-name}/{certificate-version}",
        "get_certificate",
        "certificates",
    ),
    _op(
        "PATCH",
        rf"/certificates/{SEG}/(?P<version>[^/]*)",
        "UpdateCertificate",
        "/certificates/{certificate-name}/{certificate-version}",
        "update_certificate",
        "certificates",
    ),
    _op(
        "GET",
        r"/deletedcertificates",
        "GetDeletedCertificates",
        "/deletedcertificates",
        "get_deleted_certificates",
        "certificates",
    ),
    _op(
        "GET",
        rf"/deletedcertificates/{SEG}",
        "GetDeletedCertificate",
        "/deletedcertificates/{certificate-name}",
        "get_deleted_certificate",
        "certificates",
    ),
    _op(
        "DELETE",
        rf"/deletedcertificates/{SEG}",
        "PurgeDeletedCertificate",
        "/deletedcertificates/{certificate-name}",
        "purge_deleted_certificate",
        "certificates",
    ),
    _op(
        "POST",
        rf"/deletedcertificates/{SEG}/recover",
        "RecoverDeletedCertificate",
        "/deletedcertificates/{certificate-name}/recover",
        "recover_deleted_certificate",
        "certificates",
    ),
]
NOT_EMULATED = [
    re.compile(r"^/secrets/[^/]+/backup$"),
    re.compile(r"^/secrets/restore$"),
    re.compile(r"^/certificates/[^/]+/(backup|create|pending(/merge)?)$"),
    re.compile(r"^/certificates/(restore|contacts|issuers(/[^/]+)?)$"),
]

COMMON_HEADERS = {
    "cache-control": "no-cache",
    "pragma": "no-cache",
    "expires": "-1",
    "x-ms-keyvault-service-version": "1.9.0.0-emulator",
    "x-ms-keyvault-region": "emulator",
    "x-content-type-options": "nosniff",
    "strict-transport-security": "max-age=31536000;includeSubDomains",
}


class App:
    def __init__(
        self,
        vault: Vault,
        tokens: Tokens,
        throttle: Throttle,
        stats: Stats,
        identity_header: str | None,
        certificates: Vault | None = None,
    ) -> None:
        self.vault, self.tokens, self.throttle, self.stats = vault, tokens, throttle, stats
        self.certs = certificates or Vault(vault.retention_days, vault.delete_latency, noun="Certificate")
        self.identity_header = identity_header
        self.latency = 0.0

    def asgi(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        methods = ["GET", "PUT", "PATCH", "POST", "DELETE", "HEAD", "OPTIONS"]
        return Starlette(routes=[Route("/{path:path}", self.dispatch, methods=methods)])

    # -- plumbing
    def _response(self, request: Any, status: int, body: Any, extra: dict[str, str] | None = None) -> Any:
        from starlette.responses import Response

        headers = dict(COMMON_HEADERS)
        headers["x-ms-request-id"] = str(uuid.uuid4())
        client_id = request.headers.get("x-ms-client-request-id")
        if client_id:
            headers["x-ms-client-request-id"] = client_id
        headers.update(extra or {})
        if body is None:
            return Response(status_code=status, headers=headers)
        return Response(
            json.dumps(body, separators=(",", ":")),
            status_code=status,
            headers=headers,
            media_type="application/json; charset=utf-8",
        )

    async def dispatch(self, request: Any) -> Any:
        path = request.url.path
        method = request.method
        if path.startswith("/_emulator/") or path == "/msi/token":
            return await self.emulator_route(request, path, method)
        op, match = None, None
        path_known = False
        for candidate in OPERATIONS:
            m = candidate.pattern.match(path)
            if m:
                path_known = True
                if candidate.method == method:
                    op, match = candidate, m
                    break
        if op is None:
            if any(p.match(path) for p in NOT_EMULATED):
                err = KVError(501, "NotImplemented", "Backup and restore are not emulated.")
            elif path_known:
                err = KVError(405, "MethodNotAllowed", f"The requested method {method} is not allowed.")
            else:
                err = KVError(404, "NotFound", f"The requested resource {path} was not found.")
            self.stats.add("Unknown", err.status)
            return self._response(request, err.status, err.body())
        if self.latency > 0:
            await asyncio.sleep(self.latency)  # the network's share of a real call
        try:
            status, body, extra = await self.run(op, match.groupdict(), request)
        except KVError as err:
            status, body, extra = err.status, err.body(), err.headers
        self.stats.add(op.operation_id, status, match.groupdict().get("name"))
        return self._response(request, status, body, extra)

    async def run(self, op: Op, params: dict[str, str], request: Any) -> tuple[int, Any, dict[str, str]]:
        api_version = request.query_params.get("api-version")
        if not api_version:
            raise bad("The 'api-version' query parameter is missing.")  # message not verified
        if not API_VERSION_RE.match(api_version):
            raise bad(f"The specified version ({api_version}) is not recognized.")
        reason = self.tokens.check(request.headers.get("authorization"))
        if reason:
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{self.tokens.tenant}", '
                f'resource="{VAULT_RESOURCE}"'
            )
            raise KVError(401, "Unauthorized", reason, headers={"www-authenticate": challenge})
        wait = self.throttle.retry_after()
        if wait is not None:
            raise KVError(
                429,
                "Throttled",
                "Request was not processed because too many requests were "
                "received. Reason: VaultRequestTypeLimitReached",
                headers={"retry-after": str(wait)},
            )
        name = params.get("name")
        if name is not None and not NAME_RE.match(name):
            raise bad(f"The request URI contains an invalid name: {name}")
        body = None
        if request.method in ("PUT", "PATCH") or op.operation_id == "ImportCertificate":
            raw = await request.body()
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                raise bad("The request body is not valid JSON.") from None
            if not isinstance(body, dict):
                raise bad("The request body must be a JSON object.")
        base = f"https://{request.headers.get('host') or request.url.netloc}"
        handler: Callable[..., Any] = getattr(self, op.handler)
        status, result = handler(base=base, request=request, body=body, **params)
        return status, result, {}

    async def emulator_route(self, request: Any, path: str, method: str) -> Any:
        if path == "/_emulator/stats" and method == "GET":
            return self._response(request, 200, self.stats.snapshot())
        if path == "/_emulator/stats" and method == "DELETE":
            self.stats.reset()
            return self._response(request, 204, None)
        if path == "/msi/token" and method == "GET":
            status, body = self.msi_token(request)
            self.stats.add("ManagedIdentityToken", status)
            return self._response(request, status, body)
        return self._response(request, 404, {"error": {"code": "NotFound", "message": path}})

    # -- managed identity (App Service, api-version 2019-08-01)
    def msi_token(self, request: Any) -> tuple[int, dict[str, Any]]:
        header = request.headers.get("x-identity-header")
        if not header or (self.identity_header is not None and header != self.identity_header):
            return 401, {"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER is missing or wrong."}
        resource = request.query_params.get("resource")
        if not request.query_params.get("api-version") or not resource:
            return 400, {"statusCode": 400, "message": "The api-version and resource query parameters are required."}
        token, expires_on = self.tokens.issue(resource)
        return 200, {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": "00000000-0000-0000-0000-0000000e0001",
        }

    # -- secrets
    @staticmethod
    def _page(request: Any, items: list[Any], key: Callable[[Any], str]) -> tuple[list[Any], str | None]:
        raw = request.query_params.get("maxresults")
        try:
            size = int(raw) if raw is not None else DEFAULT_PAGE
        except ValueError:
            raise bad(f"Invalid value for maxresults: {raw}") from None
        if not 1 <= size <= DEFAULT_PAGE:
            raise bad(f"The value of maxresults must be between 1 and {DEFAULT_PAGE}.")
        token = request.query_params.get("$skiptoken")
        if token:
            try:
                marker = json.loads(_unb64(token))["NextMarker"]
            except (ValueError, KeyError, TypeError):
                raise bad("Invalid $skiptoken.") from None
            keys = [key(i) for i in items]
            items = items[keys.index(marker) + 1 :] if marker in keys else [i for i in items if key(i) > marker]
        page = items[:size]
        if len(items) <= size:
            return page, None
        marker = _b64(json.dumps({"NextMarker": key(page[-1]), "TargetLocation": 0}).encode())
        url = request.url
        link = (
            f"https://{request.headers.get('host') or url.netloc}{url.path}?api-version="
            f"{quote(request.query_params['api-version'])}&$skiptoken={marker}"
        )
        if raw is not None:
            link += f"&maxresults={size}"
        return page, link

    def set_secret(self, *, base: str, request: Any, body: dict[str, Any], name: str) -> tuple[int, Any]:
        value = body.get("value")
        if not isinstance(value, str):
            raise bad("Property 'value' is required and must be a string.")  # message not verified
        if len(value) > MAX_VALUE_CHARS:
            raise bad(
                f"Secret is beyond the maximum permitted length of {MAX_VALUE_CHARS} characters.", "SecretTooLarge"
            )
        content_type, tags = self._content_type(body), self._tags(body)
        s, v = self.vault.set(name, value, content_type, tags, self._attributes(body) or {})
        return 200, bundle(self.vault, base, s, v, value=True)

    def get_secret(
        self, *, base: str, request: Any, body: None, name: str, version: str | None = None
    ) -> tuple[int, Any]:
        s, v = self.vault.get(name, version or "")
        if not v.enabled:
            raise KVError(403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
        return 200, bundle(self.vault, base, s, v, value=True)

    def update_secret(
        self, *, base: str, request: Any, body: dict[str, Any], name: str, version: str
    ) -> tuple[int, Any]:
        s, v = self.vault.update(name, version, self._content_type(body), self._tags(body), self._attributes(body))
        return 200, bundle(self.vault, base, s, v, value=False)

    def get_secrets(self, *, base: str, request: Any, body: None) -> tuple[int, Any]:
        page, link = self._page(request, self.vault.list_live(), lambda s: s.name.lower())
        return 200, {
            "value": [item(self.vault, base, s, s.versions[s.latest], versioned=False) for s in page],
            "nextLink": link,
        }

    def get_secret_versions(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        page, link = self._page(request, self.vault.list_versions(name), lambda sv: sv[1].version)
        return 200, {"value": [item(self.vault, base, s, v, versioned=True) for s, v in page], "nextLink": link}

    def delete_secret(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        s = self.vault.delete(name)
        return 200, {**bundle(self.vault, base, s, s.versions[s.latest], value=False), **deleted_fields(base, s)}

    def get_deleted_secret(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        s = self.vault.get_deleted(name)
        return 200, {**bundle(self.vault, base, s, s.versions[s.latest], value=False), **deleted_fields(base, s)}

    def get_deleted_secrets(self, *, base: str, request: Any, body: None) -> tuple[int, Any]:
        page, link = self._page(request, self.vault.list_deleted(), lambda s: s.name.lower())
        return 200, {
            "value": [
                {**item(self.vault, base, s, s.versions[s.latest], versioned=False), **deleted_fields(base, s)}
                for s in page
            ],
            "nextLink": link,
        }

    def recover_deleted_secret(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        s = self.vault.recover(name)
        return 200, bundle(self.vault, base, s, s.versions[s.latest], value=False)

    def purge_deleted_secret(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        self.vault.purge(name)
        return 204, None

    # -- certificates
    def import_certificate(self, *, base: str, request: Any, body: dict[str, Any], name: str) -> tuple[int, Any]:
        """A new version of the certificate (created with the first): PFX, or PEM per the policy."""
        from cryptography.hazmat.primitives import hashes, serialization

        value = body.get("value")
        if not isinstance(value, str):
            raise bad("Property 'value' is required and must be a string.")  # message not verified
        policy = body.get("policy") or {}
        content_type = (policy.get("secret_props") or {}).get("contentType") or PFX_TYPE
        if content_type not in (PEM_TYPE, PFX_TYPE):
            raise bad(f"Unsupported content type {content_type!r}: use {PFX_TYPE} or {PEM_TYPE}.")
        pwd = body.get("pwd")
        leaf, _chain = parse_certificate_import(value, pwd if isinstance(pwd, str) else None, content_type)
        der = leaf.public_bytes(serialization.Encoding.DER)
        attrs = {
            "nbf": int(leaf.not_valid_before_utc.timestamp()),
            "exp": int(leaf.not_valid_after_utc.timestamp()),
            **{k: v for k, v in (self._attributes(body) or {}).items() if k == "enabled"},
        }
        s, v = self.certs.set(name, base64.b64encode(der).decode(), content_type, self._tags(body), attrs)
        v.extra = {
            "x5t": _b64(leaf.fingerprint(hashes.SHA1())),  # noqa: S303  Key Vault's x5t is the SHA-1 thumbprint
            "policy": certificate_policy(leaf, content_type, v.created),
        }
        return 200, cert_bundle(self.certs, base, s, v)

    def get_certificate(
        self, *, base: str, request: Any, body: None, name: str, version: str | None = None
    ) -> tuple[int, Any]:
        s, v = self.certs.get(name, version or "")
        return 200, cert_bundle(self.certs, base, s, v)

    def get_certificate_policy(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        s, v = self.certs.get(name)
        return 200, {"id": f"{base}/certificates/{s.name}/policy", **v.extra["policy"]}

    def update_certificate(
        self, *, base: str, request: Any, body: dict[str, Any], name: str, version: str
    ) -> tuple[int, Any]:
        attrs = {k: v for k, v in (self._attributes(body) or {}).items() if k == "enabled"}
        s, v = self.certs.update(name, version, None, self._tags(body), attrs)
        return 200, cert_bundle(self.certs, base, s, v)

    def get_certificates(self, *, base: str, request: Any, body: None) -> tuple[int, Any]:
        page, link = self._page(request, self.certs.list_live(), lambda s: s.name.lower())
        return 200, {
            "value": [cert_item(self.certs, base, s, s.versions[s.latest], versioned=False) for s in page],
            "nextLink": link,
        }

    def get_certificate_versions(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        page, link = self._page(request, self.certs.list_versions(name), lambda sv: sv[1].version)
        return 200, {"value": [cert_item(self.certs, base, s, v, versioned=True) for s, v in page], "nextLink": link}

    def delete_certificate(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        s = self.certs.delete(name)
        return 200, {**cert_bundle(self.certs, base, s, s.versions[s.latest]), **cert_deleted_fields(base, s)}

    def get_deleted_certificate(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        s = self.certs.get_deleted(name)
        return 200, {**cert_bundle(self.certs, base, s, s.versions[s.latest]), **cert_deleted_fields(base, s)}

    def get_deleted_certificates(self, *, base: str, request: Any, body: None) -> tuple[int, Any]:
        page, link = self._page(request, self.certs.list_deleted(), lambda s: s.name.lower())
        return 200, {
            "value": [
                {
                    **cert_item(self.certs, base, s, s.versions[s.latest], versioned=False),
                    **cert_deleted_fields(base, s),
                }
                for s in page
            ],
            "nextLink": link,
        }

    def recover_deleted_certificate(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        s = self.certs.recover(name)
        return 200, cert_bundle(self.certs, base, s, s.versions[s.latest])

    def purge_deleted_certificate(self, *, base: str, request: Any, body: None, name: str) -> tuple[int, Any]:
        self.certs.purge(name)
        return 204, None

    # -- body parts
    @staticmethod
    def _content_type(body: dict[str, Any]) -> str | None:
        ct = body.get("contentType")
        if ct is not None and (not isinstance(ct, str) or len(ct) > MAX_CONTENT_TYPE):
            raise bad(f"contentType must be a string of at most {MAX_CONTENT_TYPE} characters.")
        return ct

    @staticmethod
    def _tags(body: dict[str, Any]) -> dict[str, str] | None:
        tags = body.get("tags")
        if tags is None:
            return None
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise bad("Tags must be an object of string values.")
        if len(tags) > MAX_TAGS:
            raise bad(f"Too many tags: {len(tags)}; at most {MAX_TAGS} are allowed.")
        return dict(tags)

    @staticmethod
    def _attributes(body: dict[str, Any]) -> dict[str, Any] | None:
        attrs = body.get("attributes")
        if attrs is None:
            return None
        if not isinstance(attrs, dict):
            raise bad("attributes must be an object.")
        out: dict[str, Any] = {}
        if "enabled" in attrs and attrs["enabled"] is not None:
            if not isinstance(attrs["enabled"], bool):
                raise bad("attributes.enabled must be a boolean.")
            out["enabled"] = attrs["enabled"]
        for key in ("nbf", "exp"):
            if key in attrs:
                if attrs[key] is not None and not isinstance(attrs[key], int):
                    raise bad(f"attributes.{key} must be an integer (epoch seconds).")
                out[key] = attrs[key]
        return out


# --- TLS material --------------------------------------------------------------------------------


def ensure_tls(state_dir: Path) -> tuple[Path, Path, Path]:
    """CA + server certificate for 127.0.0.1/localhost; reused when already in state_dir."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_pem, cert_pem, key_pem = state_dir / "ca.pem", state_dir / "server.pem", state_dir / "server-key.pem"
    now = dt.datetime.now(dt.UTC)
    if ca_pem.exists() and cert_pem.exists() and key_pem.exists():
        cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
        if cert.not_valid_after_utc > now + dt.timedelta(days=1):
            return ca_pem, cert_pem, key_pem

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certsync emulator"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Azure Key Vault emulator CA"))
        .issuer_name(name("Azure Key Vault emulator CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=397))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    # the server presents leaf + CA; clients trust ca.pem
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca_pem, cert_pem, key_pem


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Azure Key Vault secrets emulator (HTTPS).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443, help="0 picks a free port (see the READY line)")
    p.add_argument("--state-dir", required=True, type=Path, help="where ca.pem and the server key go")
    p.add_argument(
        "--throttle-per-10s",
        type=int,
        default=None,
        metavar="T",
        help="answer 429 beyond T requests per window (real vault: 4000 per 10 s); off by default",
    )
    p.add_argument(
        "--throttle-window",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="length of the throttling window (default 10; shorter for fast tests)",
    )
    p.add_argument("--retention-days", type=int, default=90, choices=range(7, 91), metavar="7..90")
    p.add_argument(
        "--delete-latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="time a delete/recover/purge stays in progress (real vaults: a few seconds)",
    )
    p.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="added to every vault call: a network's round trip, for benchmarks",
    )
    p.add_argument("--tenant-id", default=DEFAULT_TENANT)
    p.add_argument("--identity-header", default=None, help="require this X-IDENTITY-HEADER value (default: any)")
    p.add_argument(
        "--accept-any-token",
        action="store_true",
        help="accept any well-formed bearer token, not only those issued by /msi/token",
    )
    args = p.parse_args(argv)

    import uvicorn

    ca_pem, cert_pem, key_pem = ensure_tls(args.state_dir)
    app = App(
        Vault(args.retention_days, args.delete_latency),
        Tokens(args.tenant_id, args.accept_any_token),
        Throttle(args.throttle_per_10s, args.throttle_window),
        Stats(),
        args.identity_header,
    )
    app.latency = args.latency_ms / 1000.0

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets that say so; without it
    # every response (headers and body are separate TLS records) waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(512)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(f"READY https://{host}:{port} ca={ca_pem}", flush=True)

    config = uvicorn.Config(
        app.asgi(),
        ssl_certfile=str(cert_pem),
        ssl_keyfile=str(key_pem),
        access_log=False,
        log_level="warning",
        lifespan="off",
        timeout_keep_alive=120,
        server_header=False,
        date_header=True,
        # idle TLS keep-alive clients never answer close_notify: do not wait
        timeout_graceful_shutdown=1,
    )
    # that timeout is expected at every stop (idle keep-alive clients): not an error here
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: "timeout graceful shutdown exceeded" not in record.getMessage()
    )
    Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
