"""Files certsync writes for the user (`export --out`, `sign --out`, `crl --out`, `metrics --out`).

`write_atomic`: the bytes go to a temporary file in the target's folder, created exclusively
(O_EXCL, O_NOFOLLOW) with mode 0600, fsynced, given its final mode, then renamed over the target
and the folder fsynced: a reader sees the old file or the new one, never half of one, and a
private key is never readable by others, not even for a moment, whatever mode an old file had.
A symbolic link at the target is refused (its target stays untouched): a rename would replace
the link anyway, but a user who pointed it somewhere meant something else.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from sync.errors import UsageError


def write_atomic(
    path: Path | str, data: str | bytes, *, mode: int = 0o644, option: str = "--out", owner: int = -1, group: int = -1
) -> None:
    """Write `data` to `path` atomically with `mode` (0600 for anything holding a private key) and,
    when given (not -1), the uid `owner` and gid `group`: both set before the rename."""
    path = Path(path)
    check_target(path, option)
    folder = path.parent
    body = data.encode("utf-8") if isinstance(data, str) else data
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"write_atomic needs str or bytes, not {type(data).__name__}")
    fd, tmp = _exclusive_temp(folder, path.name, option)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
            if owner != -1 or group != -1:  # before the mode: chown may clear setuid/setgid bits
                os.fchown(handle.fileno(), owner, group)
            os.fchmod(handle.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(folder)


def check_target(path: Path | str, option: str = "--out") -> None:
    """Refuse (UsageError) a target that is a symbolic link or a folder, or whose folder is missing:
    callers check before doing work that the write would then not record."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise UsageError(f"{option}: folder {path.parent} does not exist") from None
        return
    if stat.S_ISLNK(info.st_mode):
        raise UsageError(f"{option}: {path} is a symbolic link; refusing to write through it")
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{option}: {path} is a directory")


def fsync_dir(folder: Path | str) -> None:
    """Make a rename or a new file in `folder` durable."""
    fd = os.open(folder if str(folder) else ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exclusive_temp(folder: Path, name: str, option: str) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(16):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageError(f"{option}: cannot write in {folder}: {exc.strerror}") from None
    raise UsageError(f"{option}: cannot create a temporary file in {folder}")
