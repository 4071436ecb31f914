"""The dashboard's pure parts: the timeline's geometry, the table's filter rules, the copies'
status, the sign-in redirect target and the shipped assets."""

from __future__ import annotations

from datetime import datetime, timedelta, UTC
from importlib import resources

from sync.inventory import DeploymentView, Facts, Inventory, InventoryRow, Target
from sync.server.dashboard import _safe_next, rows, timeline, views

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def row(name: str, state: str = "active", version: int = 1, days: float = 20, profile: str = "web") -> InventoryRow:
    return InventoryRow(
        name,
        state,
        version,
        "ab" * 20,
        NOW + timedelta(days=days),
        days,
        0,
        0,
        profile,
        "issuing",
        NOW + timedelta(days=days - 30),
    )


def test_timeline_places_bars_the_renewal_window_and_now():
    items = [
        timeline.Item(
            "a", "certificate", "active", NOW - timedelta(days=10), NOW + timedelta(days=20), NOW + timedelta(days=10)
        ),
        timeline.Item("CA root", "ca", "active", NOW - timedelta(days=400), NOW + timedelta(days=3650), None),
    ]
    g = timeline.layout(items, NOW)
    cert, ca = g.lanes
    assert timeline.LABEL <= cert.x0 < g.now_x < cert.renew_x < cert.x1 <= g.width
    assert ca.x0 == timeline.LABEL and ca.clipped and ca.renew_x is None  # starts before, ends after the view
    assert g.labels and g.lane_height == timeline.ROOMY
    assert "renewal due from 2026-12-11" in cert.title and "20.0 days left" in cert.title
    svg = str(timeline.svg_lanes(g))
    assert svg.count('<g class="lane') == 2 and svg.count('class="renew"') == 1


def test_timeline_goes_compact_beyond_its_roomy_limit():
    items = [
        timeline.Item(f"c{i}", "certificate", "active", NOW, NOW + timedelta(days=30), None)
        for i in range(timeline.ROOMY_MAX + 1)
    ]
    g = timeline.layout(items, NOW)
    assert not g.labels and g.lane_height == timeline.COMPACT and "<text" not in str(timeline.svg_lanes(g))


def test_copies_follow_what_list_counts():
    inventory = Inventory([row("a", version=2), row("r", state="revoked")], [], [])
    deployments = [
        DeploymentView("a", "aws", "a", 11, 2, 11, 2, NOW),
        DeploymentView("a", "dr", "a", 10, 1, 11, 2, NOW),
        DeploymentView("r", "aws", "r", 20, 1, None, None, NOW),
    ]
    facts = Facts(inventory, deployments, [Target("a", "gcp", "a-tls")], NOW)
    found = views.copies(facts)
    assert [(c.destination, c.status, c.version) for c in found["a"]] == [
        ("aws", "in-sync", 2),
        ("dr", "stale", 1),
        ("gcp", "missing", None),
    ]
    assert [(c.status, c.version) for c in found["r"]] == [("revoked", 1)]


def test_filters():
    view = views.CertificateView(row("api-1", days=5), [views.Copy("aws", "api-1", "in-sync", 1)], None)
    assert views.matches(view, {})
    assert views.matches(view, {"q": "API", "profile": "web", "destination": "aws", "expiring": "7"})
    assert not views.matches(view, {"expiring": "3"})
    assert not views.matches(view, {"destination": "gcp"})
    assert not views.matches(view, {"state": "revoked"})
    html = str(rows.table_rows([view], {"api-1"}))
    assert " hidden>" in html and "✓ v1" in html and 'data-days="5.0"' in html


def test_next_is_only_ever_a_dashboard_page():
    assert _safe_next("/dashboard/certificates/x") == "/dashboard/certificates/x"
    for bad in (
        "https://evil.example/",
        "//evil.example/",
        "/dashboard/login",
        "/api/v1/certificates",
        "/dashboard/..//evil",
        "/dashboard/\\evil",
    ):
        assert _safe_next(bad) == "/dashboard/"


def test_templates_and_assets_are_package_data():
    package = resources.files("sync.server.dashboard")
    for name in ("templates/base.html", "templates/certificates.html", "static/dashboard.css", "static/dashboard.js"):
        assert package.joinpath(name).is_file(), name
