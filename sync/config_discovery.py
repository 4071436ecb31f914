"""The [discovery] table: what `certsync discover` scans. The cloud part is `[discovery.clouds]`."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CloudDiscoveryConfig(BaseModel):
    """`certsync discover --clouds`: which destinations are read, and how fast."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    destinations: list[str] | None = Field(None, description=(
        "Destinations ([destination.NAME]) whose secrets are inspected; unset: every configured destination. "
        "--destination on the command line overrides it."))
    max_reads_per_second: float | None = Field(default=None, gt=0, description=(
        "Pace reads (listing pages and secret reads) at this rate per quota domain; unset: 95% of the cloud's "
        "documented read quota (AWS 10,000/s, Google 600/min per project, Key Vault 4,000 per 10 s per vault)."))


class DiscoveryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clouds: CloudDiscoveryConfig = Field(default_factory=CloudDiscoveryConfig, description=(
        "Cloud secret stores: [discovery.clouds]."))
