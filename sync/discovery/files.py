"""Files: walk the listed folders for certificates, judged by content (an extension is a hint only).

Read: PEM (any number of blocks), DER, PKCS#7 and PKCS#12 (with no password, an empty one, or the
one in the environment variable named by the config). A file is opened when its extension is a
certificate one, or its first KiB holds a PEM header or it starts like DER. Symbolic links are never followed out of
the root (os.walk does not descend linked folders; a linked file is read only when it resolves
inside the root); what is skipped or cannot be read is reported, never fatal. Private keys found
next to certificates are neither kept nor reported.

Java keystores (JKS/JCEKS) are not read: no maintained library reads them (pyjks has had no
release since 2020). A .jks file that is really PKCS#12 (Java 9+'s default) is read as PKCS#12.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from collections.abc import Iterator

from sync.discovery.parse import certificates
from sync.discovery.record import Observation

HINTS = {".pem", ".crt", ".cer", ".der", ".p7b", ".p7c", ".pfx", ".p12", ".jks", ".cert", ".ca-bundle", ".chain"}
PKCS12 = {".pfx", ".p12", ".jks"}
JKS_MAGIC = (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce")
SNIFF = 1024  # PEM may follow comments or openssl's Bag Attributes


@dataclass(frozen=True)
class FileScan:
    max_size: int = 1024 * 1024
    password: bytes | None = None  # PKCS#12 password from the environment, if any


def location_of(path: str) -> str:
    return "file://" + os.path.abspath(path)


def scope_of(root: str) -> str:
    """What a walk of `root` covers: everything under a folder, or the one file."""
    path = os.path.abspath(root)
    return location_of(path) + ("/" if os.path.isdir(path) and not path.endswith("/") else "")


def scan(roots: list[str], options: FileScan) -> list[Observation]:
    return [obs for root in roots for obs in walk(root, options)]


def walk(root: str, options: FileScan) -> Iterator[Observation]:
    root = os.path.abspath(root)
    real_root = os.path.realpath(root)
    if not os.path.exists(root):
        yield Observation("file", location_of(root), error="no such file or folder")
        return
    if not os.path.isdir(root):
        yield from _file(root, options)
        return
    errors: list[OSError] = []
    for folder, dirs, names in os.walk(root, followlinks=False, onerror=errors.append):
        for name in sorted(dirs):
            path = os.path.join(folder, name)
            if os.path.islink(path) and not _inside(os.path.realpath(path), real_root):
                yield Observation("file", location_of(path), error="skipped: a symbolic link leading out of the root")
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(folder, name)
            if os.path.islink(path) and not _inside(os.path.realpath(path), real_root):
                yield Observation("file", location_of(path), error="skipped: a symbolic link leading out of the root")
                continue
            yield from _file(path, options)
    for exc in errors:
        yield Observation("file", location_of(exc.filename or root), error=_why(exc))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _file(path: str, options: FileScan) -> Iterator[Observation]:
    ext = os.path.splitext(path)[1].lower()
    hinted = ext in HINTS
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return
        if info.st_size > options.max_size:
            if hinted:
                yield Observation("file", location_of(path), error=f"skipped: larger than {options.max_size} bytes")
            return
        with open(path, "rb") as fh:
            head = fh.read(SNIFF)
            if not (hinted or _looks_like_certificate(head) or head[:4] in JKS_MAGIC):
                return
            data = head + fh.read()
    except OSError as exc:
        yield Observation("file", location_of(path), error=_why(exc))
        return
    passwords = [None, b""] + ([options.password] if options.password else [])
    found = certificates(data, passwords=passwords)
    if found:
        yield Observation("file", location_of(path), certificates=found, details={"size": len(data)})
    elif data[:4] in JKS_MAGIC:
        yield Observation(
            "file",
            location_of(path),
            error=(
                "a Java keystore (JKS/JCEKS): not read; convert it with keytool -importkeystore -deststoretype PKCS12"
            ),
        )
    elif ext in PKCS12 and data[:1] == b"\x30":
        yield Observation(
            "file",
            location_of(path),
            error=("not readable as PKCS#12 with the password given (--pkcs12-password-env / pkcs12_password_env)"),
        )


def _looks_like_certificate(head: bytes) -> bool:
    return b"-----BEGIN" in head or (head[:1] == b"\x30" and head[1:2] in (b"\x82", b"\x83", b"\x80"))


def _why(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()
