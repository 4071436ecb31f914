"""`certsync metrics`: the store's facts in the Prometheus text exposition format (version 0.0.4).

For node_exporter's textfile collector (`certsync metrics --out /var/lib/node_exporter/certsync.prom`,
written atomically) or any scraper. No cloud call: what the store knows.

    certsync_certificate_not_after_seconds{certificate,version}   notAfter of the active version
    certsync_ca_not_after_seconds{ca}                              notAfter of the CA's active generation
    certsync_destination_last_success_seconds{destination,remote_name,certificate}   last push
    certsync_destination_in_sync{destination,remote_name,certificate}   1 = carries the active version
"""
from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sync import inventory

if TYPE_CHECKING:
    from sync.app import App

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    """Label values: backslash, double quote and line feed escaped, as the format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


class Family:
    def __init__(self, name: str, help_text: str, kind: str = "gauge") -> None:
        self.name, self.help, self.kind = name, help_text, kind
        self.samples: list[tuple[dict[str, str], float]] = []

    def add(self, labels: dict[str, str], value: float) -> None:
        self.samples.append((labels, value))

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            text = ",".join(f'{key}="{escape_label(str(val))}"' for key, val in labels.items())
            out.append(f"{self.name}{{{text}}} {_number(value)}" if text else f"{self.name} {_number(value)}")
        return out


def families(gathered: inventory.Facts) -> list[Family]:
    certs = Family("certsync_certificate_not_after_seconds",
                   "Expiry (notAfter) of the certificate's active version, in Unix seconds.")
    for row in gathered.inventory.certificates:
        if row.state == "active":
            certs.add({"certificate": row.name, "version": str(row.version)}, _seconds(row.not_after))
    cas = Family("certsync_ca_not_after_seconds", "Expiry (notAfter) of the CA's active generation, in Unix seconds.")
    for ca in gathered.inventory.authorities:
        cas.add({"ca": ca["name"]}, _seconds(inventory.ca_not_after(ca)))
    pushed = Family("certsync_destination_last_success_seconds",
                    "When certsync last wrote this copy successfully, in Unix seconds.")
    in_sync = Family("certsync_destination_in_sync",
                     "1 when the copy carries the certificate's active version, 0 when it is stale or missing.")
    seen: set[tuple[str, str]] = set()
    for d in gathered.deployments:
        labels = {"destination": d.destination, "remote_name": d.remote_name, "certificate": d.certificate}
        if d.pushed_at is not None:
            pushed.add(labels, _seconds(d.pushed_at))
        in_sync.add(labels, 1 if d.in_sync else 0)
        seen.add((d.destination, d.remote_name))
    for t in gathered.targets:   # configured but never pushed: missing, so not in sync
        if (t.destination, t.remote_name) not in seen:
            in_sync.add({"destination": t.destination, "remote_name": t.remote_name, "certificate": t.certificate}, 0)
            seen.add((t.destination, t.remote_name))
    for family in (certs, cas, pushed, in_sync):
        family.samples.sort(key=lambda s: sorted(s[0].items()))
    return [certs, cas, pushed, in_sync]


def render(gathered: inventory.Facts) -> str:
    return "\n".join(line for family in families(gathered) for line in family.lines()) + "\n"


def collect(app: App) -> str:
    return render(app.facts())


def write_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write next to `path` under a name without .prom (the textfile collector skips it), fsync,
    then rename over `path`: a scrape sees the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
