"""The [server] table: how `certsync serve` listens, proves itself (TLS) and recognises clients.

Deny by default: without TLS the server listens only on loopback (or behind a TLS-terminating
proxy with plain_http = true, said out loud); client certificates come from the TLS handshake, or
from a proxy's header only when that proxy's address is listed in trusted_proxies.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from providers.base import is_loopback
from sync.config_base import Strict as _Strict
from sync.durations import Duration


# What an API token may do (`certsync token create --scope`); a token is also bound to one profile.
TOKEN_SCOPES = {
    "read": "list and get certificates and chains (never a private key)",
    "issue": "issue a certificate whose key certsync makes (the key is returned once)",
    "sign": "sign a CSR (REST sign, EST simpleenroll)",
    "renew": "renew a certificate of the token's profile",
    "revoke": "revoke a certificate of the token's profile",
}


def ip_networks(value: list[str]) -> list[str]:
    """A list of IP networks (CIDR, host bits allowed), each checked; ValueError names the first bad one."""
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network like 10.0.0.0/8") from None
    return value


def split_listen(value: str) -> tuple[str, int]:
    """ "HOST:PORT" (IPv6 in brackets) -> (host, port); ValueError names the rule."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(f"{value!r} must be HOST:PORT, like 127.0.0.1:8443 or [::1]:8443")
    return host.strip("[]"), int(port)


class EstConfig(_Strict):
    """[server.est]: which profiles EST (RFC 7030) enrolls under. Deny by default: none listed, no EST."""

    profiles: list[str] = Field(
        default_factory=list,
        description=(
            "Profiles served over EST, each at /.well-known/est/PROFILE/ (the profile is the EST label); empty "
            "(the default) with no default_profile: EST is off and its URLs answer 404."
        ),
    )
    default_profile: str | None = Field(
        None,
        description=(
            "The profile the unlabelled /.well-known/est/ URLs enroll under (served even if not in profiles); "
            "unset: only labelled URLs."
        ),
    )

    def served(self) -> list[str]:
        """Every profile with EST URLs."""
        extra = [self.default_profile] if self.default_profile and self.default_profile not in self.profiles else []
        return [*self.profiles, *extra]


class AcmeConfig(_Strict):
    """[server.acme]: the ACME (RFC 8555) endpoints, one directory per profile that opts in."""

    profiles: list[str] = Field(
        default_factory=list,
        description=(
            "Profiles served over ACME, each at /acme/PROFILE/directory. Deny by default: empty, no ACME at all. "
            "Anyone who proves control of a name (http-01, dns-01) the profile allows gets a certificate for it, "
            "so list only profiles meant for that (or set require_eab)."
        ),
    )
    require_eab: bool = Field(
        False,
        description=(
            "New accounts must carry an External Account Binding: a key id and MAC key made with "
            "`certsync acme eab create KID --profile PROFILE` (each usable for one account)."
        ),
    )
    dns_resolver: str | None = Field(
        None,
        description=(
            "HOST:PORT of the DNS server asked for dns-01 TXT records (_acme-challenge.NAME); unset: the "
            "system's resolvers."
        ),
    )
    http_port: int = Field(
        80,
        ge=1,
        le=65535,
        description=("Port http-01 validation connects to (80 per RFC 8555; another only for tests)."),
    )
    resolve: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Fixed addresses for http-01 validation, name pattern -> IP, e.g. {"*.example.internal" = '
            '"127.0.0.1"} (the machine\'s resolver is used for other names and is never changed).'
        ),
    )
    validation_timeout: Duration = Field(
        timedelta(seconds=10), description=("How long one http-01 or dns-01 check may take.")
    )
    order_lifetime: Duration = Field(
        timedelta(days=1), description=("How long an order and its authorizations stay usable before they expire.")
    )
    nonce_lifetime: Duration = Field(timedelta(hours=1), description="How long an unused Replay-Nonce is accepted.")

    @field_validator("dns_resolver")
    @classmethod
    def _resolver(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    @field_validator("resolve")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern, address in value.items():
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"resolve[{pattern!r}]: {address!r} is not an IP address") from None
        return value


class ServerConfig(_Strict):
    listen: str = Field(
        "127.0.0.1:8443",
        description=(
            "Address the server listens on, HOST:PORT (`certsync serve --listen` overrides it). ACME, EST, "
            "the REST API and the dashboard need TLS there unless it is a loopback address or plain_http is set."
        ),
    )
    http_listen: str | None = Field(
        None,
        description=(
            "An extra plain-HTTP listener serving only the CRL and OCSP endpoints (and /healthz), the way relying "
            "parties fetch them (RFC 5280 and RFC 6960 use http:// URLs: revocation data is signed, and a TLS "
            "fetch of it would need revocation checking itself)."
        ),
    )
    public_url: str | None = Field(
        None,
        description=(
            "The URL clients reach the server at, e.g. https://ca.example.internal:8443. When set, CAs without "
            "crl_url/ocsp_url write PUBLIC_URL/crl/CA.crl and PUBLIC_URL/ocsp/CA (http_public_url if set) into "
            "the certificates they issue."
        ),
    )
    http_public_url: str | None = Field(
        None,
        description=(
            "The URL of the plain-HTTP listener as clients reach it (for the CRL and OCSP URLs in certificates)."
        ),
    )
    tls_cert_file: str | None = Field(None, description="PEM certificate chain the server presents.")
    tls_key_file: str | None = Field(None, description="PEM private key of tls_cert_file (keep it 0600).")
    tls_certificate: str | None = Field(
        None,
        description=(
            "Serve a certificate certsync itself issues: the name of a [certificate.NAME]. Its key is read from "
            "the store (never written in clear to disk) and a renewed version is picked up without a restart."
        ),
    )
    tls_check_every: Duration = Field(
        timedelta(minutes=1),
        description=("How often the server looks for a renewed tls_certificate in the store (new connections get it)."),
    )
    client_ca_file: str | None = Field(
        None,
        description=(
            "PEM roots that client certificates (mTLS: EST re-enrollment, API) must chain to; unset: the roots of "
            "certsync's own CAs."
        ),
    )
    client_cert_header: str | None = Field(
        None,
        description=(
            "Trusted-proxy mode: the header in which a TLS-terminating proxy passes the client certificate "
            "(URL-encoded PEM, nginx's $ssl_client_escaped_cert), e.g. X-SSL-Client-Cert. Honoured only from "
            "trusted_proxies, and the certificate is still verified here."
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Networks (CIDR) of proxies whose client_cert_header and X-Forwarded-For are believed; empty: none."
        ),
    )
    dashboard_clients: list[str] = Field(
        default_factory=list,
        description=(
            "Subjects of client certificates (mTLS, RFC 4514 as `openssl x509 -noout -subject -nameopt RFC2253` "
            'prints them, e.g. "CN=alice,O=Example") that may read the dashboard without a token; empty: '
            "a `read` token only."
        ),
    )
    plain_http: bool = Field(
        False,
        description=(
            "Serve everything over plain HTTP on a non-loopback listen address (only behind a TLS-terminating "
            "proxy): tokens and keys would otherwise cross the network in clear."
        ),
    )
    rate_limit: int = Field(
        600,
        ge=0,
        description=(
            "Requests per minute one client (token, or address) may make; 0: no limit. Each replica counts its own."
        ),
    )
    ocsp_signer: Literal["delegated", "ca"] = Field(
        "delegated",
        description=(
            "Who signs OCSP responses: a short-lived delegated responder certificate (id-kp-OCSPSigning, made and "
            "renewed automatically, so the CA key is opened only to certify it) or the CA itself."
        ),
    )
    ocsp_signer_validity: Duration = Field(
        timedelta(days=7),
        description=("Lifetime of a delegated OCSP signing certificate; a new one is made when half of it has passed."),
    )
    ocsp_response_lifetime: Duration = Field(
        timedelta(hours=12), description=("nextUpdate - thisUpdate of each OCSP response.")
    )
    metrics_public: bool = Field(
        False,
        description=(
            "Serve /metrics without a token; by default a scraper presents a token with the read scope "
            "(Prometheus: authorization { credentials_file = ... }), since the page names every certificate."
        ),
    )
    access_log: bool = Field(True, description="One JSON line per request on stderr (never a token or body).")
    est: EstConfig = Field(
        default_factory=EstConfig,
        description=("EST (RFC 7030) enrollment: the profiles it serves ([server.est], docs/server.md)."),
    )
    acme: AcmeConfig = Field(
        default_factory=AcmeConfig,
        description=(
            "ACME (RFC 8555): which profiles have a directory, External Account Binding, validation settings "
            "(docs/server-acme.md)."
        ),
    )

    @field_validator("listen", "http_listen")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    @field_validator("public_url", "http_public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.lower().startswith(("https://", "http://")):
                raise ValueError("must be an http:// or https:// URL")
            value = value.rstrip("/")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return ip_networks(value)

    @model_validator(mode="after")
    def _tls(self) -> ServerConfig:
        if self.tls_certificate and (self.tls_cert_file or self.tls_key_file):
            raise ValueError("set tls_certificate or tls_cert_file + tls_key_file, not both")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.client_cert_header and not self.trusted_proxies:
            raise ValueError("client_cert_header needs trusted_proxies (who may set it)")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_certificate or self.tls_cert_file)

    def check_listen(self, listen: str) -> None:
        """Refuse plain HTTP off loopback unless plain_http says a proxy terminates TLS (ValueError)."""
        host, _ = split_listen(listen)
        if not self.tls and not self.plain_http and not is_loopback(host):
            raise ValueError(
                f"{listen} is not a loopback address and no TLS is configured: set tls_certificate "
                "(or tls_cert_file + tls_key_file), or plain_http = true behind a TLS-terminating proxy"
            )

    def revocation_base(self) -> str | None:
        """The base of derived CRL and OCSP URLs: the plain-HTTP listener's when there is one."""
        return self.http_public_url or self.public_url
