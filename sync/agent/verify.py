"""Is a (key, leaf, intermediates) set fit to serve? The key pairs with the leaf, the chain
validates to one of the trusted roots at `now` (sync.pki.bundle: RFC 5280 path rules and
cryptography's verifier), and the leaf carries every name the agent's config asks for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from sync.errors import VerifyError
from sync.pki import names as pki_names
from sync.pki.bundle import Bundle, check_bundle
from sync.pki.certs import PrivateKey


@dataclass(frozen=True)
class Pair:
    key: PrivateKey
    leaf: x509.Certificate
    intermediates: list[x509.Certificate]

    @property
    def serial(self) -> str:
        return format(self.leaf.serial_number, "x")


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise VerifyError("not a PEM certificate list") from None


def root_for(last: x509.Certificate, roots: list[x509.Certificate]) -> x509.Certificate:
    for root in roots:
        if root.subject == last.issuer:
            try:
                last.verify_directly_issued_by(root)
                return root
            except (ValueError, TypeError, InvalidSignature):
                continue
    raise VerifyError(f"the chain does not lead to a trusted root (issuer {last.issuer.rfc4514_string()!r})")


def check(
    name: str,
    pair: Pair,
    roots: list[x509.Certificate],
    *,
    dns_names: list[str],
    ip_addresses: list[str],
    now: datetime,
) -> None:
    """VerifyError (one line) unless `pair` is fit to serve for these names at `now`."""
    chain = [pair.leaf, *pair.intermediates]
    if pair.intermediates and pair.intermediates[-1] in roots:  # a chain that repeats the root
        chain.pop()
    root = root_for(chain[-1], roots)
    check_bundle(
        Bundle(name=name, version=0, certificate=pair.leaf, private_key=pair.key, intermediates=chain[1:], root=root),
        now,
    )
    try:
        sans = pair.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns, ips = pki_names.split(sans)
    except x509.ExtensionNotFound:
        dns, ips = [], []
    missing = [n for n in dns_names if n.lower() not in {d.lower() for d in dns}]
    missing += [a for a in ip_addresses if a not in ips]
    if missing:
        raise VerifyError(f"certificate {name!r}: lacks the configured name(s) {', '.join(missing)}")
