"""`certsync metrics`: the store's facts in the Prometheus text exposition format (version 0.0.4).

For node_exporter's textfile collector (`certsync metrics --out /var/lib/node_exporter/certsync.prom`,
written atomically) or any scraper. No cloud call: what the store knows.

    certsync_certificate_not_after_seconds{certificate,version}   notAfter of the active version
    certsync_ca_not_after_seconds{ca}                              notAfter of the CA's active generation
    certsync_destination_last_success_seconds{destination,remote_name,certificate}   last push
    certsync_destination_in_sync{destination,remote_name,certificate}   1 = carries the active version
    certsync_discovered_not_after_seconds{fingerprint,subject,managed}   notAfter of a found certificate
    certsync_discovered_locations{fingerprint}                 places it is still seen
    certsync_discovered_problem{fingerprint,problem}           1 per problem (expired, untrusted, ...)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sync import files, inventory

if TYPE_CHECKING:
    from sync.app import App

Sample = tuple[dict[str, str], float]


def _gauge(name: str, help_text: str, samples: list[Sample]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text)
    for labels, value in sorted(samples, key=lambda s: sorted(s[0].items())):
        family.add_sample(name, labels, value)
    return family


def families(gathered: inventory.Facts) -> list[GaugeMetricFamily]:
    certs = [
        ({"certificate": row.name, "version": str(row.version)}, row.not_after.timestamp())
        for row in gathered.inventory.certificates
        if row.state == "active"
    ]
    cas = [({"ca": ca["name"]}, inventory.ca_not_after(ca).timestamp()) for ca in gathered.inventory.authorities]
    pushed: list[Sample] = []
    in_sync: list[Sample] = []
    seen: set[tuple[str, str]] = set()
    for d in gathered.deployments:
        labels = {"destination": d.destination, "remote_name": d.remote_name, "certificate": d.certificate}
        if d.pushed_at is not None:
            pushed.append((labels, d.pushed_at.timestamp()))
        in_sync.append((labels, 1 if d.in_sync else 0))
        seen.add((d.destination, d.remote_name))
    for t in gathered.targets:  # configured but never pushed: missing, so not in sync
        if (t.destination, t.remote_name) not in seen:
            in_sync.append(
                ({"destination": t.destination, "remote_name": t.remote_name, "certificate": t.certificate}, 0)
            )
            seen.add((t.destination, t.remote_name))
    return _certsync(certs, cas, pushed, in_sync) + _discovered(gathered.discovered)


def _discovered(rows) -> list[GaugeMetricFamily]:
    """The discovery inventory (sync.found.FoundRow); fingerprints shortened to 16 hex digits.
    No family at all before anything was found (no discovery, no change to the page)."""
    if not rows:
        return []
    expiry = [
        (
            {"fingerprint": r.fingerprint[:16], "subject": r.subject, "managed": str(r.managed).lower()},
            r.not_after.timestamp(),
        )
        for r in rows
    ]
    places = [({"fingerprint": r.fingerprint[:16]}, float(len(r.locations))) for r in rows]
    problems = [({"fingerprint": r.fingerprint[:16], "problem": p}, 1.0) for r in rows for p in r.problems]
    return [
        _gauge(
            "certsync_discovered_not_after_seconds",
            "Expiry (notAfter) of a certificate `certsync discover` found, in Unix seconds.",
            expiry,
        ),
        _gauge("certsync_discovered_locations", "Places a found certificate is still seen.", places),
        _gauge(
            "certsync_discovered_problem",
            "1 for each problem of a found certificate: expired, expiring, weak-key, weak-signature, untrusted, "
            "hostname-mismatch, incomplete-chain.",
            problems,
        ),
    ]


def _certsync(certs, cas, pushed, in_sync) -> list[GaugeMetricFamily]:
    return [
        _gauge(
            "certsync_certificate_not_after_seconds",
            "Expiry (notAfter) of the certificate's active version, in Unix seconds.",
            certs,
        ),
        _gauge(
            "certsync_ca_not_after_seconds", "Expiry (notAfter) of the CA's active generation, in Unix seconds.", cas
        ),
        _gauge(
            "certsync_destination_last_success_seconds",
            "When certsync last wrote this copy successfully, in Unix seconds.",
            pushed,
        ),
        _gauge(
            "certsync_destination_in_sync",
            "1 when the copy carries the certificate's active version, 0 when it is stale or missing.",
            in_sync,
        ),
    ]


class FactsCollector(Collector):
    """The store's facts, gathered once, as a prometheus_client collector."""

    def __init__(self, gathered: inventory.Facts) -> None:
        self.gathered = gathered

    def collect(self):
        return families(self.gathered)


def registry(gathered: inventory.Facts) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FactsCollector(gathered))
    return reg


def render(gathered: inventory.Facts) -> str:
    """The text exposition format 0.0.4, as prometheus_client writes it."""
    return generate_latest(registry(gathered)).decode()


def collect(app: App) -> str:
    return render(app.facts())


def write_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write next to `path` (a hidden temporary name without .prom: the textfile collector skips
    it), fsync, then rename over `path`: a scrape sees the old file or the new one, never half of
    one. Not prometheus_client's write_to_textfile: it neither fsyncs nor sets the mode (the file
    gets the umask's, 0600 under umask 077, which node_exporter's own user then cannot read)."""
    files.write_atomic(path, text, mode=mode)
