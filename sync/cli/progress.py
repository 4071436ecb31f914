"""A progress bar per quota domain for long runs: on a terminal only, never in CI or with -q."""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import TaskID


def wanted(quiet: bool, json_output: bool) -> bool:
    return not quiet and not json_output and sys.stderr.isatty() and not os.environ.get("CI")


class DomainProgress:
    """rich bars on stderr, one per quota domain; safe to call from the lanes' threads."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> DomainProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def start(self, domain: str, total: int) -> None:
        with self._lock:
            self._tasks[domain] = self._progress.add_task(domain, total=total)

    def advance(self, domain: str) -> None:
        with self._lock:
            self._progress.advance(self._tasks[domain])
