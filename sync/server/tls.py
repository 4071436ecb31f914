"""TLS for `certsync serve`: the server's own certificate (a file pair, or a certificate certsync
issues, reloaded when renewed) and the client certificate of an mTLS request.

uvicorn does not hand the client certificate to the application (the ASGI TLS extension is not
merged there), so `PeerCertificateH11` — uvicorn's h11 protocol, one instance per connection — reads
it from the verified TLS session when the connection is made and adds it to every request's scope
as `extensions.tls.client_cert_chain` (the ASGI TLS extension's key, PEM). The handshake has
already verified it against the client roots (CERT_OPTIONAL: a client without one still connects,
and endpoints that need one refuse). Behind a TLS-terminating proxy, `client_cert_header` carries
it instead, believed only from `trusted_proxies` and verified here again.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import ssl
import tempfile
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store as TrustStore, VerificationError
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol

from sync.errors import AuthError, ConfigError


class PeerCertificateH11(H11Protocol):
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            pem = ssl.DER_cert_to_PEM_cert(der)
            self.app = _with_client_certificate(self.app, pem)


def _with_client_certificate(app, pem: str):
    async def with_certificate(scope, receive, send):
        if scope["type"] == "http":
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = {**extensions.get("tls", {}), "client_cert_chain": [pem]}
            scope = {**scope, "extensions": extensions}
        await app(scope, receive, send)

    return with_certificate


def peer_address(request: Request, trusted: list[str]) -> str:
    """The client's address: the socket's, or X-Forwarded-For's last untrusted hop behind a trusted proxy."""
    address = request.client.host if request.client else "unknown"
    if not _trusted(address, trusted):
        return address
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return address


def _trusted(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def client_certificate(
    request: Request,
    *,
    header: str | None,
    trusted: list[str],
    roots: list[x509.Certificate],
    intermediates: list[x509.Certificate],
) -> x509.Certificate | None:
    """The request's verified client certificate, or None when it presented none.
    From the TLS session (verified by the handshake), or from the trusted proxy's header
    (verified here against `roots`; a header from anyone else is ignored)."""
    chain = ((request.scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain") or []
    if chain:
        return x509.load_pem_x509_certificate(chain[0].encode())
    if not header or not request.client or not _trusted(request.client.host, trusted):
        return None
    value = request.headers.get(header)
    if not value:
        return None
    try:
        cert = x509.load_pem_x509_certificate(unquote(value).encode())
    except ValueError:
        raise AuthError(f"the {header} header from the proxy is not a PEM certificate") from None
    verify_client(cert, roots, intermediates)
    return cert


def verify_client(cert: x509.Certificate, roots: list[x509.Certificate], intermediates: list[x509.Certificate]) -> None:
    """Path validation (RFC 5280, clientAuth) with cryptography's verifier; AuthError when it fails."""
    if not roots:
        raise AuthError("no client roots are configured")
    verifier = PolicyBuilder().store(TrustStore(roots)).build_client_verifier()
    try:
        verifier.verify(cert, intermediates)
    except VerificationError as exc:
        raise AuthError(f"the client certificate does not verify: {exc}") from None


# -- the server's own certificate -------------------------------------------------------------------------
def load_chain(context: ssl.SSLContext, chain_pem: bytes, key) -> None:
    """Load a certificate chain and key into `context` without the key ever being on disk in clear:
    written encrypted under a random one-time password to a private folder, loaded, removed."""
    password = secrets.token_urlsafe(24).encode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password)
    )
    with tempfile.TemporaryDirectory(prefix="certsync-tls-") as folder:  # 0700
        cert_path, key_path = Path(folder, "chain.pem"), Path(folder, "key.pem")
        for path, data in ((cert_path, chain_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        context.load_cert_chain(cert_path, key_path, password=password)


def server_context(client_roots_pem: bytes | None) -> ssl.SSLContext:
    """TLS 1.2+ server context; client certificates asked for (optional) and verified against
    `client_roots_pem` when given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_roots_pem:
        context.load_verify_locations(cadata=client_roots_pem.decode())
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def read_pem_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"server.{what}: cannot read {path}: {exc.strerror}") from None
