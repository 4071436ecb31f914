"""How often the agent looks: once (cron, `--once`), or as a daemon that sleeps until the next
certificate is due (at most `interval`), and after a failure backs off exponentially with full
jitter (10 s, 20 s, 40 s, ... up to `backoff_max`, each a random share of that), never sooner
than a Retry-After the server sent. A stop event (SIGTERM) ends the sleep at once; a run in
progress (a reload) finishes first."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from collections.abc import Callable

from sync.agent.deploy import Deployer, Outcome

BACKOFF_BASE = 10.0  # seconds after the first failure (before jitter)
MIN_PAUSE = timedelta(minutes=1)


def run_once(deployer: Deployer, *, force: bool = False) -> list[Outcome]:
    return [deployer.run(key, spec, force=force) for key, spec in deployer.config.certificate.items()]


def backoff(
    failures: int, cap: float, retry_after: float | None = None, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the `failures`-th failure in a row (1, 2, ...): full jitter."""
    ceiling = min(cap, BACKOFF_BASE * 2 ** min(failures - 1, 30))
    return max(ceiling * (0.5 + rand() / 2), retry_after or 0.0)


def run_daemon(
    deployer: Deployer,
    stop: threading.Event,
    on_outcome: Callable[[Outcome], None],
    *,
    force: bool = False,
    now: Callable[[], datetime] | None = None,
) -> None:
    clock = now or deployer.now
    config = deployer.config
    due = {key: clock() for key in config.certificate}
    failures = {key: 0 for key in config.certificate}
    forced = set(config.certificate) if force else set()
    while not stop.is_set():
        for key, spec in config.certificate.items():
            if stop.is_set() or clock() < due[key]:
                continue
            outcome = deployer.run(key, spec, force=key in forced)
            forced.discard(key)
            on_outcome(outcome)
            at = clock()
            if outcome.ok:
                failures[key] = 0
                # never sooner than a minute: a renew window longer than the lifetime must not spin
                due[key] = max(at + MIN_PAUSE, min(outcome.next_check or at, at + config.interval))
            else:
                failures[key] += 1
                wait = backoff(failures[key], config.backoff_max.total_seconds(), outcome.retry_after)
                due[key] = at + timedelta(seconds=wait)
        sleep = (min(due.values()) - clock()).total_seconds()
        stop.wait(max(1.0, sleep))
