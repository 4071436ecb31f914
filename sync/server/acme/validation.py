"""Challenge checks (RFC 8555 8.3, 8.4): http-01 fetches the key authorization from the name's
port 80 (http_port), dns-01 reads the TXT record _acme-challenge.NAME from the configured
resolver. Each returns nothing or raises AcmeError (stored on the challenge, shown to the client)."""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import ipaddress
import socket
import threading

import dns.exception
import dns.resolver

from sync.config_server import AcmeConfig, split_listen
from sync.server.acme.errors import AcmeError
from sync.server.acme.jws import b64encode

MAX_BODY = 8192


def key_authorization(token: str, thumbprint: str) -> str:
    return f"{token}.{thumbprint}"


def validate(kind: str, name: str, token: str, thumbprint: str, config: AcmeConfig) -> None:
    expected = key_authorization(token, thumbprint)
    if kind == "http-01":
        http_01(name, token, expected, config)
    elif kind == "dns-01":
        dns_01(name, expected, config)
    else:
        raise AcmeError("malformed", f"unsupported challenge type {kind!r}")


def address_of(name: str, config: AcmeConfig) -> str:
    """The address http-01 connects to: a fixed one from [server.acme] resolve, else the system's lookup."""
    for pattern, address in config.resolve.items():
        if fnmatch.fnmatchcase(name.lower(), pattern.lower()):
            return address
    try:
        infos = socket.getaddrinfo(name, config.http_port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise AcmeError("dns", f"cannot resolve {name}") from None
    return str(infos[0][4][0])


def http_01(name: str, token: str, expected: str, config: AcmeConfig) -> None:
    address = address_of(name, config)
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    timeout = config.validation_timeout.total_seconds()
    connection = http.client.HTTPConnection(host.strip("[]"), config.http_port, timeout=timeout)
    # the socket timeout is per read: a responder trickling a byte at a time would hold this thread
    # for hours, so the whole fetch is cut off at the deadline (shutdown wakes a blocked read)
    deadline = threading.Timer(timeout, _cut, (connection,))
    deadline.start()
    try:
        connection.request("GET", f"/.well-known/acme-challenge/{token}", headers={"Host": name})
        response = connection.getresponse()
        body = response.read(MAX_BODY + 1)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise AcmeError(
            "connection",
            f"http-01: cannot fetch http://{name}:{config.http_port}/.well-known/"
            f"acme-challenge/...: {exc.__class__.__name__}",
        ) from None
    finally:
        deadline.cancel()
        connection.close()
    if response.status != 200:
        raise AcmeError(
            "incorrectResponse", f"http-01: http://{name}/.well-known/acme-challenge/... answered {response.status}"
        )
    if body.decode("ascii", "replace").strip() != expected:
        raise AcmeError("incorrectResponse", "http-01: the response is not the key authorization")


def _cut(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def dns_01(name: str, expected: str, config: AcmeConfig) -> None:
    digest = b64encode(hashlib.sha256(expected.encode()).digest())
    resolver = dns.resolver.Resolver(configure=config.dns_resolver is None)
    if config.dns_resolver is not None:
        host, port = split_listen(config.dns_resolver)
        resolver.nameservers = [host]
        resolver.port = port
    timeout = config.validation_timeout.total_seconds()
    query = f"_acme-challenge.{name}"
    try:
        answer = resolver.resolve(query, "TXT", lifetime=timeout, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        raise AcmeError("dns", f"dns-01: {query} does not exist") from None
    except dns.exception.DNSException as exc:
        raise AcmeError("dns", f"dns-01: cannot look up TXT {query}: {exc.__class__.__name__}") from None
    values = {b"".join(r.strings).decode("ascii", "replace") for r in answer.rrset or []}
    if digest not in values:
        raise AcmeError("incorrectResponse", f"dns-01: no TXT record at {query} holds the expected value")
