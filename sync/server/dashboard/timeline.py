"""The expiry timeline's geometry (pure): one lane per CA and certificate, a bar from notBefore to
notAfter, the renewal window (from when renewal is due to notAfter) drawn over its end, a line at
now. The template turns it into inline SVG (no script, no library)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

WIDTH = 1000  # viewBox units; the SVG scales to the page
LABEL = 190  # left column with the names
AXIS = 28  # room for the month ticks at the top
ROOMY, COMPACT = 18, 5  # lane heights: with a name, and (beyond ROOMY_MAX lanes) without
ROOMY_MAX = 300


@dataclass(frozen=True)
class Item:
    label: str
    kind: str  # ca | certificate
    state: str
    not_before: datetime
    not_after: datetime
    renew_from: datetime | None
    href: str | None = None


@dataclass(frozen=True)
class Lane:
    item: Item
    y: float
    x0: float
    x1: float
    renew_x: float | None
    clipped: bool  # it goes on past the right edge
    title: str


@dataclass(frozen=True)
class Geometry:
    width: int
    height: int
    lane_height: int
    labels: bool
    now_x: float
    lanes: list[Lane]
    ticks: list[tuple[float, str]]
    start: datetime
    end: datetime


def layout(items: list[Item], now: datetime) -> Geometry:
    start = now - timedelta(days=30)
    certs = [i.not_after for i in items if i.kind == "certificate"]
    end = min(max([now + timedelta(days=90), *certs]), now + timedelta(days=730)) + timedelta(days=7)
    span = (end - start).total_seconds()
    plot = WIDTH - LABEL - 10

    def x(at: datetime) -> float:
        seconds = min(max((at - start).total_seconds(), 0.0), span)
        return round(LABEL + plot * seconds / span, 1)

    labels = len(items) <= ROOMY_MAX
    height = ROOMY if labels else COMPACT
    lanes = [
        Lane(
            item,
            AXIS + n * height,
            x(item.not_before),
            x(item.not_after),
            x(item.renew_from) if item.renew_from else None,
            item.not_after > end,
            _title(item, now),
        )
        for n, item in enumerate(items)
    ]
    return Geometry(
        WIDTH, AXIS + len(items) * height + 6, height, labels, x(now), lanes, _ticks(start, end, x), start, end
    )


def _title(item: Item, now: datetime) -> str:
    days = (item.not_after - now).total_seconds() / 86400
    text = f"{item.label} ({item.kind}, {item.state}): valid {item.not_before:%Y-%m-%d} to {item.not_after:%Y-%m-%d}"
    text += f", {days:.1f} days left" if days >= 0 else f", expired {-days:.1f} days ago"
    if item.renew_from:
        text += f"; renewal due from {item.renew_from:%Y-%m-%d}"
    return text


def _ticks(start: datetime, end: datetime, x) -> list[tuple[float, str]]:
    """The first of each month (every third one beyond a year)."""
    step = 1 if (end - start).days <= 400 else 3
    ticks: list[tuple[float, str]] = []
    year, month = start.year, start.month + 1
    while True:
        if month > 12:
            year, month = year + 1, month - 12
        at = start.replace(year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0)
        if at >= end:
            return ticks
        ticks.append((x(at), f"{at:%Y-%m}"))
        month += step


def svg_lanes(g: Geometry) -> Markup:
    """The lanes as SVG markup (written here rather than by the template: quick at 5,000 lanes)."""
    bar = g.lane_height - 6 if g.labels else g.lane_height - 1
    # compact lanes (5 px, beyond ROOMY_MAX) go without a tooltip: too thin to point at, and the
    # page's weight is what the browser pays for; the table is the text alternative either way

    def title(lane: Lane) -> str:
        return f"<title>{escape(lane.title)}</title>" if g.labels else ""

    out = []
    for lane in g.lanes:
        item = lane.item
        label = escape(item.label)
        renew = f' data-renew-from="{item.renew_from.isoformat()}"' if item.renew_from else ""
        text = ""
        if g.labels:
            short = escape(item.label if len(item.label) <= 28 else item.label[:27] + "…")
            text = f'<text class="name" x="4" y="{lane.y + 13}">{short}</text>'
            if item.href:
                text = f'<a href="{escape(item.href)}">{text}</a>'
        window = (
            f'<rect class="renew" x="{lane.renew_x}" y="{lane.y + 3}" width="{max(lane.x1 - lane.renew_x, 1):.1f}" '
            f'height="{bar}"/>'
            if lane.renew_x is not None
            else ""
        )
        out.append(
            f'<g class="lane {item.kind} state-{item.state}" data-name="{label}" '
            f'data-not-after="{item.not_after.isoformat()}"{renew}>{title(lane)}{text}'
            f'<rect class="life" x="{lane.x0}" y="{lane.y + 3}" width="{max(lane.x1 - lane.x0, 1):.1f}" '
            f'height="{bar}"/>{window}</g>\n'
        )
    return Markup("".join(out))  # noqa: S704  labels and titles escaped above; kinds, states and numbers are ours
