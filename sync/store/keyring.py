"""Private keys at rest: AES-256-GCM under a master key.

The master key comes from CERTSYNC_MASTER_KEY (base64 of 32 bytes) or from a key file that
`init` creates with mode 0600. A missing or wrong key is an error, never a silent new key: the
store keeps a verifier (a known text encrypted under the key) that every open checks.
Each ciphertext is bound to the row it belongs to via associated data, so a key blob copied
into another row does not decrypt. Certificates are public, so they are not encrypted, but each
stored one carries an integrity tag: HMAC-SHA256 under a key derived from the master key (HKDF),
over the row's identity and the DER, so a database writer cannot put another certificate (their
own root, a leaf for the real key) into a row and have certsync send the real key out under it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sync.errors import MasterKeyError
from sync.files import fsync_dir

ENV_VAR = "CERTSYNC_MASTER_KEY"
_VERSION = b"\x01"
_NONCE = 12
_VERIFIER = b"certsync master key verifier v1"
# HKDF info strings: each derived key serves one purpose only, never the encryption key itself.
_PASSWORD_TAG_INFO = b"certsync pkcs12 password tag v1"
_CERT_TAG_INFO = b"certsync certificate integrity tag v1"


class MasterKey:
    def __init__(self, key: bytes, source: str) -> None:
        if len(key) != 32:
            raise MasterKeyError(f"master key from {source} must be 32 bytes (base64-encoded), got {len(key)}")
        self._aead = AESGCM(key)
        self._password_tag_key = HKDF(hashes.SHA256(), 32, salt=None, info=_PASSWORD_TAG_INFO).derive(key)
        self._cert_tag_key = HKDF(hashes.SHA256(), 32, salt=None, info=_CERT_TAG_INFO).derive(key)
        self.source = source

    def __repr__(self) -> str:  # never show the key
        return f"MasterKey(source={self.source!r})"

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def decrypt(self, blob: bytes, context: str) -> bytes:
        if blob[:1] != _VERSION:
            raise MasterKeyError(f"encrypted value for {context} has an unknown format")
        try:
            return self._aead.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], context.encode())
        except InvalidTag:
            raise MasterKeyError(
                f"cannot decrypt {context}: wrong master key ({self.source}) or the stored value was altered"
            ) from None

    def password_tag(self, context: str, password: bytes) -> str:
        """A keyed tag of a PFX password (HMAC-SHA256 under a key derived from the master key with
        HKDF), bound to `context` (the destination): equal passwords give equal tags under one
        master key, so a plan sees a password change; without the master key the tag reveals
        nothing (no dictionary attack on a label anyone with read access to the secret sees)."""
        message = context.encode() + b"\0" + password
        return hmac.new(self._password_tag_key, message, hashlib.sha256).hexdigest()[:32]

    def matches(self, other: MasterKey) -> bool:
        """Whether `other` is this same key (it opens what this key sealed)."""
        try:
            other.decrypt(self.encrypt(b"probe", "probe"), "probe")
            return True
        except MasterKeyError:
            return False

    def reseal(self, blob: bytes, context: str, new: MasterKey) -> bytes:
        """A blob sealed under this key, sealed again under `new` (same context)."""
        return new.encrypt(self.decrypt(blob, context), context)

    def verifier(self) -> bytes:
        return self.encrypt(_VERIFIER, "verifier")

    def check(self, verifier: bytes) -> None:
        try:
            self.decrypt(verifier, "verifier")
        except MasterKeyError:
            raise MasterKeyError(
                f"the master key from {self.source} does not match this store "
                "(wrong key, or a store created with another key)"
            ) from None

    # -- certificate integrity tags -----------------------------------------------------------------
    def tag(self, der: bytes, context: str) -> bytes:
        """HMAC-SHA256 over the row identity (length-prefixed) and the certificate's DER."""
        ctx = context.encode()
        return hmac.new(self._cert_tag_key, len(ctx).to_bytes(4, "big") + ctx + der, hashlib.sha256).digest()

    def tag_matches(self, tag: bytes, der: bytes, context: str) -> bool:
        return hmac.compare_digest(tag, self.tag(der, context))

    # -- private keys ------------------------------------------------------------------------------
    def seal_private_key(self, key, context: str) -> bytes:
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return self.encrypt(der, context)

    def seal_private_keys(self, items) -> list[bytes]:
        """seal_private_key for many (key, context) pairs at once: one urandom call for all
        nonces and the bound methods hoisted out of the loop (a batch of issuance)."""
        items = list(items)
        nonces = os.urandom(_NONCE * len(items))
        encrypt, der, pkcs8, none = (
            self._aead.encrypt,
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        sealed = []
        for i, (key, context) in enumerate(items):
            nonce = nonces[i * _NONCE : (i + 1) * _NONCE]
            sealed.append(_VERSION + nonce + encrypt(nonce, key.private_bytes(der, pkcs8, none), context.encode()))
        return sealed

    def open_private_key(self, blob: bytes, context: str):
        return serialization.load_der_private_key(self.decrypt(blob, context), password=None)


def _decode(text: str, source: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(text.strip())
        except (binascii.Error, ValueError):
            raise MasterKeyError(f"master key from {source} is not valid base64") from None


def load(key_file: Path | None) -> MasterKey:
    """The master key from the environment, else from the key file; error when neither exists."""
    env = os.environ.get(ENV_VAR)
    if env:
        return MasterKey(_decode(env, ENV_VAR), ENV_VAR)
    if key_file is None:
        raise MasterKeyError(f"no master key: set {ENV_VAR} or store.key_file")
    try:
        text = key_file.read_text()
    except FileNotFoundError:
        raise MasterKeyError(
            f"no master key: {key_file} does not exist and {ENV_VAR} is not set "
            "(run `certsync init` once to create a new store and its key)"
        ) from None
    except OSError as exc:
        raise MasterKeyError(f"cannot read master key file {key_file}: {exc.strerror}") from None
    return MasterKey(_decode(text, str(key_file)), str(key_file))


def create_key_file(key_file: Path) -> MasterKey:
    """A new random key in a file only its owner can read; refuses to overwrite."""
    return write_key_file(key_file, new_key())


def new_key() -> bytes:
    """32 random bytes from the OS: a new master key."""
    return AESGCM.generate_key(bit_length=256)


def from_env(variable: str) -> MasterKey:
    """A key given in another variable (rotation: `--new-key-env VAR`)."""
    text = os.environ.get(variable)
    if not text:
        raise MasterKeyError(f"--new-key-env: {variable} is not set")
    return MasterKey(_decode(text, variable), variable)


def write_key_file(key_file: Path, key: bytes) -> MasterKey:
    """Write `key` (32 bytes) to a new file only its owner can read, fsynced with its folder;
    refuses to overwrite."""
    new_folder = not key_file.parent.exists()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise MasterKeyError(f"{key_file} already exists; refusing to overwrite a master key") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(key_file.parent)  # the new name survives a crash too, not only the bytes
    if new_folder:
        fsync_dir(key_file.parent.parent)
    return MasterKey(key, str(key_file))
