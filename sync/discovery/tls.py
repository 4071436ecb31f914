"""TLS endpoints: connect, take the chain the server serves, judge it ourselves.

The handshake does not verify (an expired, self-signed or wrong-host certificate is exactly what a
scan must see); the served chain is then verified with cryptography's X.509 verifier twice: against
the system's trust store and against certsync's own root CAs. The hostname is compared with the
leaf's subjectAltNames (RFC 6125: a wildcard stands for one left-most label; no CN fallback).

The served chain: Python 3.13 has SSLObject.get_unverified_chain(); 3.10-3.12 have the same
method on the private _sslobj (used when present); otherwise only the leaf is recorded.

Concurrency is a fixed pool of workers (at most `concurrency` connections open) drawing from the
target list; a token bucket caps new connections per second over the whole scan; every connection
(TCP connect, STARTTLS, handshake) has one deadline. Failures are observations with an error:
reported, never fatal, and they mark nothing gone (see `scopes_of`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import ssl
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from collections.abc import Iterable

from cryptography import x509
from cryptography.x509 import verification

from sync.config_discovery import Target
from sync.discovery.parse import certificates as parse_certificates
from sync.discovery.record import Observation
from sync.pki.facts import san_strings

READ_LIMIT = 16 * 1024  # a STARTTLS greeting or reply line is short


@dataclass(frozen=True)
class Limits:
    timeout: float = 5.0  # seconds per connection, everything included
    concurrency: int = 100
    rate: float = 200.0  # new connections per second


class TokenBucket:
    """At most `rate` acquisitions per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, max(1.0, burst)
        self.tokens, self.stamp = self.burst, time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:  # one waiter at a time: the others queue behind it, in order
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


def client_context() -> ssl.SSLContext:
    """A context that accepts anything: old protocols and weak keys included, so they can be reported."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):  # an OpenSSL without them: scan what it allows
        pass
    return ctx


def scan(
    targets: list[Target], limits: Limits, *, certsync_roots: Iterable[x509.Certificate] = (), now: datetime
) -> list[Observation]:
    """Observations for `targets`, in their order."""
    return asyncio.run(scan_async(targets, limits, certsync_roots=list(certsync_roots), now=now))


async def scan_async(
    targets: list[Target], limits: Limits, *, certsync_roots: list[x509.Certificate], now: datetime
) -> list[Observation]:
    results: list[Observation | None] = [None] * len(targets)
    bucket = TokenBucket(limits.rate, limits.concurrency)
    ctx = client_context()
    trust = Trust(system_roots(), [c for c in certsync_roots if _self_issued(c)], now)
    queue = iter(enumerate(targets))

    async def worker() -> None:
        for index, target in queue:  # one shared iterator: each target taken once
            await bucket.acquire()
            results[index] = await observe(target, ctx, trust, limits.timeout)

    await asyncio.gather(*(worker() for _ in range(min(limits.concurrency, len(targets)) or 1)))
    return [r for r in results if r is not None]


async def observe(target: Target, ctx: ssl.SSLContext, trust: Trust, timeout: float) -> Observation:
    try:
        ders, protocol = await asyncio.wait_for(handshake(target, ctx), timeout)
    except TimeoutError:
        return Observation("tls", target.location, error=f"no answer within {timeout:g}s")
    except (OSError, ssl.SSLError, EOFError, StartTLSRefused, asyncio.IncompleteReadError) as exc:
        return Observation("tls", target.location, error=_why(exc))
    chain = _load(ders)
    if not chain:
        return Observation("tls", target.location, error="the server sent no certificate")
    details = {"protocol": protocol, **trust.judge(chain, target)}
    if target.scheme != "tls":
        details["starttls"] = target.scheme
    return Observation("tls", target.location, certificates=chain, details=details)


def _load(ders: list[bytes]) -> list[x509.Certificate]:
    chain = []
    for der in ders:
        try:
            chain.append(x509.load_der_x509_certificate(der))
        except ValueError:  # one unparsable certificate in a chain: keep the rest
            continue
    return chain


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:200]


async def handshake(target: Target, ctx: ssl.SSLContext) -> tuple[list[bytes], str]:
    name = target.server_name
    if target.scheme == "tls":
        reader, writer = await asyncio.open_connection(
            target.host, target.port, ssl=ctx, server_hostname=name, ssl_handshake_timeout=None
        )
    else:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            await STARTTLS[target.scheme](reader, writer)
            await writer.start_tls(ctx, server_hostname=name)
        except BaseException:
            writer.close()
            raise
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return served_chain(ssl_object), ssl_object.version() or ""
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1)
        except (TimeoutError, OSError, ssl.SSLError):
            pass


def served_chain(ssl_object) -> list[bytes]:
    """DER of every certificate the server sent, leaf first."""
    getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None
    )
    if getter is not None:
        chain = getter() or []
        return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]  # 3.11/3.12: _ssl.Certificate; no public name
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


# -- STARTTLS ------------------------------------------------------------------------------------------
class StartTLSRefused(Exception):
    pass


async def _smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _smtp_reply(reader, "220")
    writer.write(b"EHLO certsync.discovery\r\n")
    await _smtp_reply(reader, "250")
    writer.write(b"STARTTLS\r\n")
    await _smtp_reply(reader, "220")


async def _smtp_reply(reader: asyncio.StreamReader, code: str) -> None:
    while True:  # multi-line replies: "250-..." until "250 ..."
        line = (await reader.readuntil(b"\n"))[:READ_LIMIT].decode("latin-1")
        if not line.startswith(code):
            raise StartTLSRefused(f"SMTP STARTTLS refused: {line.strip()[:80]}")
        if line[3:4] != "-":
            return


async def _imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    greeting = (await reader.readuntil(b"\n")).decode("latin-1")
    if not greeting.startswith("* OK"):
        raise StartTLSRefused(f"IMAP greeting: {greeting.strip()[:80]}")
    writer.write(b"a1 STARTTLS\r\n")
    while True:
        line = (await reader.readuntil(b"\n")).decode("latin-1")
        if line.startswith("a1 "):
            if not line.startswith("a1 OK"):
                raise StartTLSRefused(f"IMAP STARTTLS refused: {line.strip()[:80]}")
            return


STARTTLS = {"smtp": _smtp, "imap": _imap}


# -- judging the chain ---------------------------------------------------------------------------------
class Trust:
    def __init__(self, system: list[x509.Certificate], certsync: list[x509.Certificate], now: datetime) -> None:
        self.now = now
        self.system = verification.Store(system) if system else None
        self.certsync = verification.Store(certsync) if certsync else None
        self.root_subjects = {c.subject for c in [*system, *certsync]}

    def judge(self, chain: list[x509.Certificate], target: Target) -> dict:
        leaf, rest = chain[0], chain[1:]
        system_ok, system_error = self._verify(self.system, leaf, rest)
        ours_ok, ours_error = self._verify(self.certsync, leaf, rest)
        last = chain[-1]
        complete = system_ok or ours_ok or _self_issued(last) or last.issuer in self.root_subjects
        details: dict[str, object] = {
            "verifies_system": system_ok,
            "verifies_certsync": ours_ok,
            "hostname_match": hostname_matches(leaf, target),
            "chain_complete": complete,
            "chain_length": len(chain),
        }
        if not (system_ok or ours_ok):
            details["verify_error"] = (system_error or ours_error or "")[:200]
        return details

    def _verify(self, store, leaf: x509.Certificate, rest: list[x509.Certificate]) -> tuple[bool, str | None]:
        if store is None:
            return False, "no trust anchors"
        subject = _some_name(leaf)
        if subject is None:
            return False, "the certificate has no subjectAltName"
        try:
            verifier = verification.PolicyBuilder().store(store).time(self.now).build_server_verifier(subject)
            verifier.verify(leaf, rest)
            return True, None
        except (verification.VerificationError, ValueError, TypeError) as exc:
            return False, " ".join(str(exc).split())


def _some_name(leaf: x509.Certificate):
    """One of the leaf's own names: the chain is verified here, the hostname separately."""
    for san in san_strings(leaf):
        kind, _, value = san.partition(":")
        try:
            if kind == "DNS" and not value.startswith("*."):
                return verification.DNSName(value)
            if kind == "IP":
                return verification.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            continue
    for san in san_strings(leaf):  # only wildcards: any name the wildcard covers
        if san.startswith("DNS:*."):
            return verification.DNSName("certsync-discovery" + san[5:])
    return None


def hostname_matches(leaf: x509.Certificate, target: Target) -> bool:
    name = (target.sni or target.host).rstrip(".").lower()
    sans = san_strings(leaf)
    if _is_address(name):
        address = ipaddress.ip_address(name)
        return any(s.startswith("IP:") and ipaddress.ip_address(s[3:]) == address for s in sans)
    for san in sans:
        if not san.startswith("DNS:"):
            continue
        pattern = san[4:].rstrip(".").lower()
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:] and name.split(".")[0]:
            return True
    return False


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _self_issued(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


@lru_cache(maxsize=1)
def _system_roots_cached(cafile: str | None, capath: str | None) -> tuple[x509.Certificate, ...]:
    found: list[x509.Certificate] = []
    paths = [cafile] if cafile and os.path.isfile(cafile) else []
    if not paths and capath and os.path.isdir(capath):
        paths = [os.path.join(capath, n) for n in sorted(os.listdir(capath))]
    for path in paths:
        try:
            with open(path, "rb") as fh, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a bundle's odd old roots (negative serials): not ours to report
                found.extend(parse_certificates(fh.read()))
        except OSError:
            continue
    return tuple(found)


def system_roots() -> list[x509.Certificate]:
    """The system trust store as OpenSSL finds it (SSL_CERT_FILE / SSL_CERT_DIR honoured): the CA
    bundle file, else every file of the CA folder."""
    paths = ssl.get_default_verify_paths()
    return list(_system_roots_cached(paths.cafile, paths.capath))


def scopes_of(observations: Iterable[Observation]) -> list[str]:
    """The locations a scan may mark gone: only endpoints that answered with a certificate (an
    endpoint down or timing out is a transient fact, not proof its certificate is gone)."""
    return [o.location for o in observations if o.error is None and o.certificates]
