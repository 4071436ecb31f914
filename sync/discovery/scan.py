"""One discovery run: which sources, what each scans, and the summary after recording.

Only what the user lists is scanned: the command line's sources when it names any, else the
[discovery] table's. Sources are looked up by name in SOURCES (tls, files; clouds plugs in the
same way): each returns its observations and the scopes it covered (what may be marked gone).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from collections.abc import Callable, Sequence

from cryptography import x509

from sync.config import Config
from sync.config_discovery import DiscoveryConfig, Target, expand_cidr, parse_target
from sync.discovery import files as files_mod, tls as tls_mod
from sync.discovery.record import Observation, record
from sync.errors import UsageError
from sync.store import Transaction


@dataclass
class Request:
    """What to scan; built by `request_from` from the config and the command line."""

    tls: list[Target] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    limits: tls_mod.Limits = field(default_factory=tls_mod.Limits)
    file_options: files_mod.FileScan = field(default_factory=files_mod.FileScan)
    extra: dict = field(default_factory=dict)  # other sources' own settings (clouds)

    def sources(self) -> list[str]:
        return [name for name, wanted in (("tls", self.tls), ("files", self.files)) if wanted] + list(self.extra)


@dataclass
class Context:
    config: Config
    now: datetime
    certsync_roots: list[x509.Certificate]
    providers: object = None  # the App's providers, for cloud sources


Source = Callable[[Request, Context], tuple[list[Observation], list[str]]]


def _tls(request: Request, ctx: Context) -> tuple[list[Observation], list[str]]:
    found = tls_mod.scan(request.tls, request.limits, certsync_roots=ctx.certsync_roots, now=ctx.now)
    return found, tls_mod.scopes_of(found)


def _files(request: Request, ctx: Context) -> tuple[list[Observation], list[str]]:
    found = files_mod.scan(request.files, request.file_options)
    return found, [files_mod.scope_of(root) for root in request.files if os.path.exists(root)]


SOURCES: dict[str, Source] = {"tls": _tls, "files": _files}


@dataclass
class Result:
    found: int = 0  # distinct certificates seen in this scan
    new: int = 0  # of them, first seen now
    managed: int = 0  # of them, issued by certsync (or its CAs)
    locations: int = 0  # places with a certificate
    gone: int = 0  # places marked gone (a certificate seen there before, not any more)
    errors: list[dict] = field(default_factory=list)  # {"location", "error"}: reported, not fatal
    sources: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "sources": self.sources,
            "found": self.found,
            "new": self.new,
            "managed": self.managed,
            "unmanaged": self.found - self.managed,
            "locations": self.locations,
            "gone": self.gone,
            "errors": self.errors,
        }


def observe(request: Request, ctx: Context) -> tuple[list[Observation], list[str]]:
    observations: list[Observation] = []
    scopes: list[str] = []
    for name in request.sources():
        if name not in SOURCES:
            raise UsageError(f"discovery source {name!r} is not available in this build")
        found, covered = SOURCES[name](request, ctx)
        observations += found
        scopes += covered
    return observations, scopes


def store(
    tx: Transaction, observations: list[Observation], scopes: list[str], now: datetime, sources: list[str]
) -> Result:
    summary = record(tx, scopes, observations, now)
    fingerprints = {f for o in observations if o.error is None for f in _fingerprints(o)}
    managed = sum(1 for fp in fingerprints if (hit := tx.discovery.lookup(fp)) and hit.certificate.managed)
    return Result(
        found=len(fingerprints),
        new=summary.certificates_new,
        managed=managed,
        locations=sum(1 for o in observations if o.error is None and o.certificates),
        gone=summary.locations_gone,
        sources=sources,
        errors=[{"location": o.location, "error": o.error} for o in observations if o.error],
    )


def _fingerprints(obs: Observation) -> list[str]:
    from sync.pki.facts import fingerprint

    return [fingerprint(c) for c in obs.certificates]


def request_from(
    config: Config,
    *,
    tls: Sequence[str] = (),
    tls_files: Sequence[str] = (),
    cidrs: Sequence[str] = (),
    ports: list[int] | None = None,
    files: Sequence[str] = (),
    max_hosts: int | None = None,
    pkcs12_password_env: str | None = None,
    extra: dict | None = None,
    cli_given: bool = False,
) -> Request:
    """The command line's sources when it names any (cli_given: it named another, e.g. --clouds),
    else the config's; settings from the config unless the command line gives them. Bad input:
    UsageError (exit 2), one line."""
    settings = config.discovery or DiscoveryConfig()
    t = settings.tls
    cli_given = cli_given or bool(tls or tls_files or cidrs or files or extra)
    if not cli_given:
        tls, tls_files, cidrs = t.targets, [str(config.resolve(f)) for f in t.target_files], t.cidrs
        files = [str(config.resolve(r)) for r in settings.files.roots]
    try:
        targets = [parse_target(x) for x in tls]
        for path in tls_files:
            targets += [parse_target(line) for line in _target_lines(path)]
        for cidr in cidrs:
            targets += expand_cidr(cidr, list(ports or t.ports), max_hosts or t.max_hosts)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    env = pkcs12_password_env or settings.files.pkcs12_password_env
    password = os.environ.get(env) if env else None
    if env and password is None:
        raise UsageError(f"the PKCS#12 password variable {env} is not set")
    return Request(
        tls=list(dict.fromkeys(targets)),
        files=[str(Path(f).absolute()) for f in files],
        limits=tls_mod.Limits(t.connect_timeout.total_seconds(), t.concurrency, t.rate),
        file_options=files_mod.FileScan(settings.files.max_file_size, password.encode() if password else None),
        extra=dict(extra or {}),
    )


def _target_lines(path: str) -> list[str]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the targets file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]
