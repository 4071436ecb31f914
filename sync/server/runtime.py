"""Running `certsync serve`: uvicorn listeners (the TLS one with everything, an optional plain-HTTP
one for CRL and OCSP), the server's certificate (reloaded when certsync renews it), and a graceful
shutdown on SIGTERM/SIGINT (requests in flight finish, for up to `GRACE` seconds).
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import uvicorn

from sync.config import Config
from sync.config_server import split_listen
from sync.errors import ConfigError, NotFound
from cryptography.hazmat.primitives.serialization import Encoding
from sync.server import app as server_app, tls
from sync.server.state import ServerState

GRACE = 15  # seconds requests in flight get on shutdown


@dataclass
class Listener:
    url: str
    server: uvicorn.Server


class _Server(uvicorn.Server):
    """Signals are handled once for every listener (run() below), not by each uvicorn.Server."""

    @contextmanager
    def capture_signals(self):
        yield


class ServerCertificate:
    """The TLS certificate and key the server presents: from files, or a certificate certsync issues
    (its current version read from the store; `refresh` loads a renewed one into the live context)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.serial: str | None = None

    def load(self, context: ssl.SSLContext) -> None:
        server = self.state.server
        if server.tls_certificate:
            chain, key, serial = self._managed(server.tls_certificate)
            tls.load_chain(context, chain, key)
            self.serial = serial
        else:
            assert server.tls_cert_file and server.tls_key_file
            cert_path, key_path = (
                self.state.config.resolve(server.tls_cert_file),
                self.state.config.resolve(server.tls_key_file),
            )
            try:
                context.load_cert_chain(cert_path, key_path)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"server.tls_cert_file/tls_key_file: cannot load {cert_path} and {key_path}: {exc}"
                ) from None

    def _managed(self, name: str):
        with self.state.transaction() as tx:
            row = tx.certificates.current(name)
            if row is None:
                raise NotFound(
                    f"server.tls_certificate: certificate {name!r} has no active version (run `certsync apply` first)"
                )
            bundle = tx.certificates.bundle(row)
            chain = b"".join(c.public_bytes(Encoding.PEM) for c in (bundle.certificate, *bundle.intermediates))
            return chain, bundle.private_key, row.serial

    def refresh(self, context: ssl.SSLContext) -> bool:
        """Load the current version if it changed (new handshakes present it); True when it did."""
        name = self.state.server.tls_certificate
        if not name:
            return False
        with self.state.transaction() as tx:
            row = tx.certificates.current(name)
            serial = row.serial if row is not None else None
        if serial is None or serial == self.serial:
            return False
        self.load(context)
        return True


def listeners(config: Config, state: ServerState, listen: str | None) -> tuple[list[Listener], Callable]:
    """The uvicorn servers to run, and the coroutine that keeps the certificate fresh."""
    server = state.server
    listen = listen or server.listen
    try:
        server.check_listen(listen)
    except ValueError as exc:
        raise ConfigError(f"server.listen: {exc}") from None
    host, port = split_listen(listen)
    certificate = ServerCertificate(state)
    context: ssl.SSLContext | None = None
    if server.tls:
        state.open()
        context = tls.server_context(state.client_roots_pem())
        certificate.load(context)
    common: dict[str, Any] = dict(
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACE,
        server_header=False,
        proxy_headers=False,
    )
    main = uvicorn.Config(
        server_app.build(config, state=state),
        host=host,
        port=port,
        http=tls.PeerCertificateH11,
        ssl_context_factory=(lambda _cfg, _default: context) if context else None,
        **common,
    )
    result = [Listener(("https" if context else "http") + f"://{listen}", _Server(main))]
    if server.http_listen:
        http_host, http_port = split_listen(server.http_listen)
        plain = uvicorn.Config(
            server_app.build(config, state=state, revocation_only=True), host=http_host, port=http_port, **common
        )
        result.append(Listener(f"http://{server.http_listen}", _Server(plain)))

    async def keep_fresh() -> None:
        while context is not None and server.tls_certificate:
            await asyncio.sleep(server.tls_check_every.total_seconds())
            try:
                if await asyncio.to_thread(certificate.refresh, context):
                    _say(
                        f"certsync serve: now presenting certificate {server.tls_certificate!r} serial "
                        f"{certificate.serial}"
                    )
            except Exception as exc:  # keep serving the current one; say why
                _say(f"certsync serve: cannot reload the server certificate: {exc}")

    return result, keep_fresh


def run(config: Config, listen: str | None = None, *, state: ServerState | None = None) -> None:
    state = state or ServerState(config)
    try:
        asyncio.run(_serve(config, state, listen))
    finally:
        state.close()


async def _serve(config: Config, state: ServerState, listen: str | None) -> None:
    servers, keep_fresh = listeners(config, state, listen)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for listener in servers:
            listener.server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(listener.server.serve()) for listener in servers]
    refresher = asyncio.create_task(keep_fresh())
    await _announce(servers)
    try:
        await asyncio.gather(*tasks)
    finally:
        refresher.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if any(not listener.server.started for listener in servers):
        raise ConfigError("server: could not listen (address in use, or not allowed)")


async def _announce(servers: list[Listener]) -> None:
    """One line per listener once it is up, with the port it really got (a port 0 asks for any)."""
    for listener in servers:
        while not listener.server.started and not listener.server.should_exit:
            await asyncio.sleep(0.02)
        if listener.server.started:
            sockets = [s for srv in listener.server.servers for s in srv.sockets]
            port = sockets[0].getsockname()[1] if sockets else None
            scheme, _, address = listener.url.partition("://")
            host = address.rpartition(":")[0]
            _say(f"certsync serve: listening on {scheme}://{host}:{port}")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
