"""Local TLS endpoints for the discovery tests and bench: certificates made here (expired,
self-signed, wrong host, served without their intermediate) and Python TLS servers on loopback
ports, many in one event loop in a background thread (or a child process for the bench)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.now(UTC)


@dataclass
class Issued:
    cert: x509.Certificate
    key: object

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def make(
    cn: str,
    *,
    issuer: Issued | None = None,
    sans: list[str] | None = None,
    ca: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key=None,
    hash_alg=None,
) -> Issued:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        names = [x509.IPAddress(ip_address(s)) if s[0].isdigit() else x509.DNSName(s) for s in (sans or [cn])]
        builder = (
            builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        )
    return Issued(builder.sign(signer, hash_alg or hashes.SHA256()), key)


def rsa_key(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def write_chain(folder: Path, name: str, chain: list[Issued]) -> tuple[Path, Path]:
    """cert file (leaf first) and key file for a server."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    cert.write_bytes(b"".join(c.pem() for c in chain))
    key.write_bytes(chain[0].key_pem())
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # serve the weak ones too: the scan must see them
    ctx.load_cert_chain(cert, key)
    return ctx


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


class Servers:
    """TLS servers on 127.0.0.1 in one event loop in a daemon thread: .start(contexts) -> ports."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.AbstractServer] = []

    def start(
        self, contexts: list[ssl.SSLContext], *, smtp: bool = False, imap: bool = False, port: int = 0
    ) -> list[int]:
        starttls = _smtp_handler if smtp else _imap_handler if imap else None
        return asyncio.run_coroutine_threadsafe(self._start(contexts, starttls, port), self.loop).result(60)

    def stop(self, port: int) -> None:
        async def stop():
            for server in [s for s in self.servers if s.sockets and s.sockets[0].getsockname()[1] == port]:
                server.close()
                await server.wait_closed()
                self.servers.remove(server)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)

    async def _start(self, contexts: list[ssl.SSLContext], starttls, port: int) -> list[int]:
        ports = []
        for ctx in contexts:
            if starttls:
                server = await asyncio.start_server(starttls(ctx), "127.0.0.1", port)
            else:
                server = await asyncio.start_server(
                    _answer, "127.0.0.1", port, ssl=ctx, backlog=1024, reuse_address=True
                )
            self.servers.append(server)
            ports.append(server.sockets[0].getsockname()[1])
        return ports

    def close(self) -> None:
        async def stop():
            for server in self.servers:
                server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _smtp_handler(ctx: ssl.SSLContext):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.example.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-mail.example.test\r\n250 STARTTLS\r\n")
        await reader.readline()
        writer.write(b"220 go ahead\r\n")
        await writer.drain()
        await writer.start_tls(ctx)
        writer.close()

    return handle


def _imap_handler(ctx: ssl.SSLContext):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
        tag = (await reader.readline()).split(b" ", 1)[0]
        writer.write(b"* a note first\r\n" + tag + b" OK Begin TLS negotiation now\r\n")
        await writer.drain()
        await writer.start_tls(ctx)
        writer.close()

    return handle
