"""JWS as ACME uses it (RFC 8555 6.2, RFC 7515 flattened JSON): parse, check the protected
header, verify the signature with the account's key. Keys come from josepy (JWK parsing and RFC
7638 thumbprints); signatures are checked by cryptography. No crypto is written here."""

from __future__ import annotations

import binascii
import json
from typing import Any
from dataclasses import dataclass

import josepy
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sync.server.acme.errors import AcmeError

# alg -> (key type, EC curve or None, hash); ES curves fixed by RFC 7518 3.4
ALGORITHMS = {
    "RS256": ("RSA", None, hashes.SHA256),
    "ES256": ("EC", "secp256r1", hashes.SHA256),
    "ES384": ("EC", "secp384r1", hashes.SHA384),
}
MIN_RSA_BITS = 2048


def b64decode(text: object, what: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise AcmeError("malformed", f"{what}: not base64url (unpadded)")
    try:
        return josepy.b64.b64decode(text)
    except (binascii.Error, ValueError, TypeError):
        raise AcmeError("malformed", f"{what}: not base64url") from None


def b64encode(data: bytes) -> str:
    return josepy.b64.b64encode(data).decode()


@dataclass(frozen=True)
class Jws:
    protected: dict
    payload: bytes  # b"" : POST-as-GET
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return self.protected["alg"]

    @property
    def jwk(self) -> dict | None:
        return self.protected.get("jwk")

    @property
    def kid(self) -> str | None:
        return self.protected.get("kid")

    @property
    def post_as_get(self) -> bool:
        return self.payload == b""

    def json(self) -> dict:
        """The payload as a JSON object (malformed otherwise)."""
        try:
            value = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError):
            raise AcmeError("malformed", "payload: not JSON") from None
        if not isinstance(value, dict):
            raise AcmeError("malformed", "payload: not a JSON object")
        return value


def parse(body: bytes | dict) -> Jws:
    """A flattened JWS (not yet verified). Refuses unprotected headers and the general form."""
    try:
        obj = json.loads(body) if isinstance(body, (bytes, str)) else body
    except (ValueError, UnicodeDecodeError):
        raise AcmeError("malformed", "request body: not JSON") from None
    if not isinstance(obj, dict) or set(obj) != {"protected", "payload", "signature"}:
        raise AcmeError("malformed", "request body: a flattened JWS with exactly protected, payload and signature")
    protected_raw = obj["protected"]
    header_bytes = b64decode(protected_raw, "protected")
    try:
        header = json.loads(header_bytes)
    except (ValueError, UnicodeDecodeError):
        raise AcmeError("malformed", "protected header: not JSON") from None
    if not isinstance(header, dict):
        raise AcmeError("malformed", "protected header: not a JSON object")
    payload = b64decode(obj["payload"], "payload") if obj["payload"] != "" else b""
    signature = b64decode(obj["signature"], "signature")
    return Jws(header, payload, f"{protected_raw}.{obj['payload']}".encode(), signature)


def check_header(jws: Jws, url: str, *, use_jwk: bool | None) -> None:
    """RFC 8555 6.2-6.4: alg, url equal to the request's, exactly one of jwk/kid (jwk where
    use_jwk is True, kid where False, either where None). The nonce is checked by the caller."""
    header = jws.protected
    if header.get("alg") not in ALGORITHMS:
        raise AcmeError(
            "badSignatureAlgorithm", f"alg {header.get('alg')!r} is not supported", algorithms=sorted(ALGORITHMS)
        )
    if header.get("url") != url:
        raise AcmeError("unauthorized", "the JWS url header is not this request's URL")
    if ("jwk" in header) == ("kid" in header):
        raise AcmeError("malformed", "the JWS must carry exactly one of jwk and kid")
    if use_jwk is True and "jwk" not in header:
        raise AcmeError("malformed", "this request is signed with the new key: put jwk, not kid, in the header")
    if use_jwk is False and "kid" not in header:
        raise AcmeError("malformed", "this request must name its account: kid, not jwk, in the header")
    if "kid" in header and not isinstance(header["kid"], str):
        raise AcmeError("malformed", "kid: not a string")


def load_jwk(jwk: object) -> josepy.JWK:
    """A public RSA (>= 2048 bits) or EC (P-256/P-384) key from a JWK; badPublicKey otherwise."""
    if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC") or "d" in jwk:
        raise AcmeError("badPublicKey", "jwk: an RSA or EC public key is required")
    try:
        key: Any = josepy.JWK.from_json(jwk)  # a JWKRSA or JWKEC (kty checked above)
    except (josepy.errors.Error, ValueError, TypeError, KeyError):
        raise AcmeError("badPublicKey", "jwk: not a valid public key") from None
    if jwk["kty"] == "RSA" and key.key.key_size < MIN_RSA_BITS:
        raise AcmeError("badPublicKey", f"jwk: RSA keys must have at least {MIN_RSA_BITS} bits")
    if jwk["kty"] == "EC" and key.key.curve.name not in ("secp256r1", "secp384r1"):
        raise AcmeError("badPublicKey", "jwk: EC keys must be on P-256 or P-384")
    return key


def public_jwk(key: josepy.JWK) -> dict:
    """The key's canonical public JWK (what is stored and compared)."""
    return key.public_key().to_json()


def thumbprint(key: josepy.JWK) -> str:
    return b64encode(key.thumbprint(hash_function=hashes.SHA256))


def verify(jws: Jws, key: josepy.JWK) -> None:
    """The signature, by `key`, with the header's alg (which must fit the key); unauthorized otherwise."""
    kty, curve, hash_cls = ALGORITHMS[jws.alg]
    public = key.key
    try:
        if kty == "RSA" and isinstance(key, josepy.JWKRSA):
            public.verify(jws.signature, jws.signing_input, padding.PKCS1v15(), hash_cls())
        elif kty == "EC" and isinstance(key, josepy.JWKEC) and public.curve.name == curve:
            size = (public.curve.key_size + 7) // 8
            if len(jws.signature) != 2 * size:
                raise InvalidSignature()
            r = int.from_bytes(jws.signature[:size], "big")
            s = int.from_bytes(jws.signature[size:], "big")
            public.verify(encode_dss_signature(r, s), jws.signing_input, ec.ECDSA(hash_cls()))
        else:
            raise AcmeError(
                "badSignatureAlgorithm", f"alg {jws.alg} does not fit the account key", algorithms=sorted(ALGORITHMS)
            )
    except InvalidSignature:
        raise AcmeError("unauthorized", "the JWS signature does not verify") from None


def verify_mac(jws: Jws, mac_key: bytes) -> None:
    """An External Account Binding's HS256 MAC (RFC 8555 7.3.4)."""
    if jws.protected.get("alg") != "HS256":
        raise AcmeError("malformed", "externalAccountBinding: alg must be HS256")
    mac = hmac.HMAC(mac_key, hashes.SHA256())
    mac.update(jws.signing_input)
    try:
        mac.verify(jws.signature)
    except InvalidSignature:
        raise AcmeError("unauthorized", "externalAccountBinding: the MAC does not verify") from None
