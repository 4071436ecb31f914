"""What every request handler shares: the config, the application object over the store, the
clock, the rate limiter, the delegated OCSP signers and the server's own metrics.

Handlers are plain functions run in Starlette's thread pool (the store is synchronous); each opens
its own transaction with `state.transaction()`. Nothing a replica must share lives here.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime
from collections.abc import Callable, Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry, Counter, Histogram

from sync.app import App
from sync.ca import revoke as revocations
from sync.clock import utcnow
from sync.config import Config
from sync.config_server import ServerConfig
from sync.errors import ConfigError
from sync.pki.ocsp import Responder
from sync.server.ratelimit import RateLimiter
from sync.store import Transaction


class ServerMetrics:
    """The server's own series, in a registry of its own (not the process-global default)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "certsync_server_requests_total",
            "HTTP requests answered, by route and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "certsync_server_request_seconds", "Time to answer a request, by route.", ["route"], registry=self.registry
        )
        self.issued = Counter(
            "certsync_server_issued_total",
            "Certificates issued through the server, by protocol.",
            ["protocol"],
            registry=self.registry,
        )
        self.denied = Counter(
            "certsync_server_denied_total",
            "Requests refused for credentials or policy.",
            ["protocol"],
            registry=self.registry,
        )


class ServerState:
    def __init__(self, config: Config, app: App | None = None, *, clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.server: ServerConfig = config.server or ServerConfig()
        self.app = app or App(config)
        self.clock = clock or utcnow
        self.limiter = RateLimiter(self.server.rate_limit)
        self.metrics = ServerMetrics()
        self._signers: dict[str, Responder] = {}
        self._signer_lock = threading.Lock()
        self._trust: tuple[list[x509.Certificate], list[x509.Certificate]] | None = None
        from sync.server.deploy import Deployer  # it needs this module's ServerState

        self.deployer = Deployer(self)
        self._opened = False

    def enrolled(self, protocol: str, name: str, profile: str) -> None:
        """After an enrollment through the server committed: count it, push it where its profile says."""
        self.metrics.issued.labels(protocol).inc()
        self.deployer.enrolled(name, profile)

    @property
    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def transaction(self, *, serialized: bool = False) -> Iterator[Transaction]:
        """serialized for anything that writes (BEGIN IMMEDIATE on SQLite: no lock upgrade failure
        between two replicas or threads; row locks on PostgreSQL where the repositories take them)."""
        with self.app.store.transaction(serialized=serialized) as tx:
            yield tx

    def open(self) -> None:
        """At startup: the store and the master key, so that a wrong key fails the start, not a request;
        then the pushes a previous process left undone."""
        self.app.store.master_key()
        if not self._opened:
            self._opened = True
            self.deployer.start()

    def close(self) -> None:
        self.deployer.stop()
        self.app.close()

    def client_trust(self) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
        """(roots, intermediates) that client certificates must chain to: client_ca_file's
        certificates (self-signed ones are the roots), else certsync's own CAs from the store."""
        if self._trust is None:
            if self.server.client_ca_file:
                path = self.config.resolve(self.server.client_ca_file)
                try:
                    certs = x509.load_pem_x509_certificates(path.read_bytes())
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"server.client_ca_file: cannot read certificates from {path}: {exc}") from None
            else:
                with self.transaction() as tx:
                    certs = [
                        tx.authorities.checked(row)
                        for name in self.config.ca
                        if (row := tx.authorities.active(name)) is not None
                    ]
            roots = [c for c in certs if c.issuer == c.subject]
            self._trust = roots, [c for c in certs if c.issuer != c.subject]
        return self._trust

    def client_roots_pem(self) -> bytes:
        roots, intermediates = self.client_trust()
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (*roots, *intermediates))

    # -- OCSP ------------------------------------------------------------------------------------------
    def ocsp_responder(self, ca_name: str) -> Responder | None:
        """The delegated signer for `ca_name` (None: the CA signs), made anew once half its life is over."""
        if self.server.ocsp_signer == "ca":
            return None
        now = self.now
        with self._signer_lock:
            signer = self._signers.get(ca_name)
            if signer is None or now >= _half_life(signer):
                with self.transaction() as tx:
                    signer = revocations.ocsp_signer(self.config, tx, ca_name, self.server.ocsp_signer_validity, now)
                self._signers[ca_name] = signer
            return signer


def _half_life(signer: Responder) -> datetime:
    cert = signer.certificate
    return cert.not_valid_before_utc + (cert.not_valid_after_utc - cert.not_valid_before_utc) / 2
