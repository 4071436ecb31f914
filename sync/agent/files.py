"""One certificate's files on the host: read what is there, write a new set, put the old set back.

Each file is written by sync.files.write_atomic: a temporary file in the same folder, fsynced,
chowned and chmodded before the rename, so a reader sees the old file or the new one and a key is
never readable by others, not even for a moment. The set is four renames, not one: a reader that
looks between them (not the service, which reads them on reload) may see a mixed set; a crash
between them leaves one that the next run finds not matching and replaces.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sync.agent.config import DEFAULT_MODES, CertificateSpec, FileSpec
from sync.agent.verify import Pair, load_certificates
from sync.errors import ConfigError, VerifyError
from sync.files import check_target, write_atomic


@dataclass(frozen=True)
class Target:
    kind: str
    path: Path
    mode: int
    uid: int
    gid: int


def targets(spec: CertificateSpec, where: str) -> list[Target]:
    """The files to write, owners resolved (ConfigError for an unknown user or group, a path that
    is a link or a folder, a folder that is missing)."""
    found = []
    for kind, file in spec.files().items():
        check_target(file.path, f"{where}.{kind}")
        found.append(
            Target(
                kind,
                file.path,
                DEFAULT_MODES[kind] if file.mode is None else file.mode,
                _uid(file, f"{where}.{kind}"),
                _gid(file, f"{where}.{kind}"),
            )
        )
    return found


def _uid(file: FileSpec, where: str) -> int:
    if file.owner is None or isinstance(file.owner, int):
        return -1 if file.owner is None else file.owner
    try:
        return pwd.getpwnam(file.owner).pw_uid
    except KeyError:
        raise ConfigError(f"{where}.owner: no user {file.owner!r} on this host") from None


def _gid(file: FileSpec, where: str) -> int:
    if file.group is None or isinstance(file.group, int):
        return -1 if file.group is None else file.group
    try:
        return grp.getgrnam(file.group).gr_gid
    except KeyError:
        raise ConfigError(f"{where}.group: no group {file.group!r} on this host") from None


def render(pair: Pair) -> dict[str, bytes]:
    """The bytes of each kind: cert (leaf), chain (intermediates), fullchain (both), key (PKCS#8)."""
    pem = serialization.Encoding.PEM
    leaf = pair.leaf.public_bytes(pem)
    chain = b"".join(c.public_bytes(pem) for c in pair.intermediates)
    key = pair.key.private_bytes(
        pem,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {"cert": leaf, "chain": chain, "fullchain": leaf + chain, "key": key}


def snapshot(found: list[Target]) -> dict[Path, bytes | None]:
    """What each file holds now (None: absent), to put back if the new set breaks the service."""
    saved: dict[Path, bytes | None] = {}
    for target in found:
        try:
            saved[target.path] = target.path.read_bytes()
        except FileNotFoundError:
            saved[target.path] = None
    return saved


def install(found: list[Target], contents: dict[str, bytes]) -> None:
    for target in found:
        write_atomic(
            target.path,
            contents[target.kind],
            mode=target.mode,
            owner=target.uid,
            group=target.gid,
            option=str(target.path),
        )


def restore(found: list[Target], saved: dict[Path, bytes | None]) -> None:
    """Put the previous files back (the same way they were replaced); remove those that were absent."""
    for target in found:
        before = saved.get(target.path)
        if before is None:
            try:
                os.unlink(target.path)
            except FileNotFoundError:
                pass
        else:
            write_atomic(
                target.path, before, mode=target.mode, owner=target.uid, group=target.gid, option=str(target.path)
            )


def read_pair(spec: CertificateSpec) -> Pair | None:
    """The set on disk as a Pair, or None when a file is missing or does not parse."""
    files = spec.files()
    try:
        key = serialization.load_pem_private_key(files["key"].path.read_bytes(), password=None)
        if "fullchain" in files:
            certs = load_certificates(files["fullchain"].path.read_bytes())
        else:
            certs = load_certificates(files["cert"].path.read_bytes())
            if "chain" in files:
                certs += load_certificates(files["chain"].path.read_bytes())
    except (OSError, ValueError, TypeError, VerifyError):
        return None
    if not certs or not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        return None  # not a key certsync makes: the files are not a pair it deployed
    return Pair(key=key, leaf=certs[0], intermediates=certs[1:])
