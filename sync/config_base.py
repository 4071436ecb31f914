"""The base of every config model (config.py, config_server.py, config_discovery.py): an unknown key
is an error (a typo never passes silently) and a loaded config is frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
