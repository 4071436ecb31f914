"""Durations as the config spells them: 90d, 12h, 30m, 45s (and 0 where a wait may be none)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, WithJsonSchema

_DURATION = re.compile(r"(\d+)([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
MAX_DURATION = timedelta(days=36500)  # 100 years: past it, dates overflow (or mean nothing)
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


class DurationTooLong(ValueError):
    pass


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    match = _DURATION.fullmatch(str(value).strip()) if isinstance(value, str) else None
    digits = match.group(1).lstrip("0") if match else ""
    if match is None or not digits:
        raise ValueError("must be a positive duration like 90d, 12h, 30m or 45s")
    if len(digits) > 12 or int(digits) * _UNIT_SECONDS[match.group(2)] > MAX_DURATION.total_seconds():
        raise DurationTooLong(f"must be at most {MAX_DURATION.days}d (100 years)")
    return timedelta(**{_UNITS[match.group(2)]: int(digits)})


def format_duration(value: timedelta) -> str:
    """The config's spelling of a duration: the largest unit that divides it (90d, 12h, 30m, 45s)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# WithJsonSchema: editors see durations as the config spells them, not as ISO 8601 (docs/certsync.schema.json)
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\s*[0-9]*[1-9][0-9]*[dhms]\s*$", "examples": ["90d", "12h", "30m", "45s"]}
    ),
]


def parse_wait(value: Any) -> timedelta:
    """A duration that may also be zero ("0", "0s", 0): how long to wait, 0 = not at all."""
    if isinstance(value, timedelta):
        return value
    if value == 0 or (isinstance(value, str) and re.fullmatch(r"0+[dhms]?", value.strip())):
        return timedelta(0)
    try:
        return parse_duration(value)
    except DurationTooLong:
        raise
    except ValueError:
        raise ValueError("must be a duration like 30s or 5m, or 0 to fail at once") from None


Wait = Annotated[
    timedelta,
    BeforeValidator(parse_wait),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": r"^\s*(0+[dhms]?|[0-9]*[1-9][0-9]*[dhms])\s*$"}, {"const": 0}]}
    ),
]


class RenewBefore(BaseModel):
    """Either a fixed duration before expiry or a fraction of the lifetime (a profile's, an agent's)."""

    duration: timedelta | None = None
    fraction: float | None = None


def parse_renew_before(value: Any) -> RenewBefore:
    if isinstance(value, RenewBefore):
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError:
            pct = -1
        if not 0 < pct < 100:
            raise ValueError('a percentage must be between 0% and 100% (exclusive), like "33%"')
        return RenewBefore(fraction=pct / 100)
    try:
        return RenewBefore(duration=parse_duration(value))
    except DurationTooLong:
        raise
    except ValueError:
        raise ValueError('must be a duration like 30d or a percentage of the lifetime like "33%"') from None
