"""(to be written)"""
from __future__ import annotations

from starlette.routing import BaseRoute

from sync.server.state import ServerState


def routes(state: ServerState) -> list[BaseRoute]:
    return []
