"""Nothing lost: SIGKILL `certsync apply`, `renew` and `revoke --replace` at random points against
the three cloud emulators, rerun `apply` at once, and check that every target holds the store's
latest version, no private key is out there that the store does not know, nothing is orphaned and
the store is intact. See tests/reliability/harness.py for the kill points and the checks.

Size: CERTSYNC_CRASH_TRIALS trials in total (default 26, about 3 minutes with -n 2; split over the tests below; each trial
kills one run and reruns apply), CERTSYNC_CRASH_BATCH new certificates per apply trial (default 4),
CERTSYNC_CRASH_SEED the seed (default fixed); CERTSYNC_CRASH_BREAK_LOCK=1 (diagnosis only) drops a
killed run's lock row before the rerun, to see what fails behind the lock. Full size (-n 0 so the
figures print):

    CERTSYNC_CRASH_TRIALS=50 ./scripts/test.sh tests/reliability -s -n 0
"""

from __future__ import annotations

import os
import random

import pytest

from tests.reliability.harness import CrashRig, Trial
from tests.support.counting_proxy import CountingProxy

TRIALS = int(os.environ.get("CERTSYNC_CRASH_TRIALS", "26"))
BATCH = int(os.environ.get("CERTSYNC_CRASH_BATCH", "4"))
SEED = int(os.environ.get("CERTSYNC_CRASH_SEED", "20261201"))
INITIAL = 24  # certificates issued and pushed by the untouched calibration run
# half the trials kill apply, a quarter each renew and revoke --replace (two tests, so -n 2 balances)
CLIENT_TRIALS = max(1, TRIALS // 4)
APPLY_TRIALS = max(1, TRIALS - 2 * CLIENT_TRIALS)


@pytest.fixture
def rig(tmp_path, emulators, name_prefix):
    with CountingProxy(emulators.entry("aws")["endpoint"]) as proxy:
        rig = CrashRig(tmp_path, emulators, name_prefix, proxy)
        rig.add(INITIAL)
        init = rig.run("init")
        assert init.returncode == 0, init.stderr
        rig.calibration = rig.timed("apply")
        rig.startup = rig.timed("--version")  # kills before this land in the interpreter's start-up
        yield rig


def finish(rig: CrashRig, trials: list[Trial], label: str) -> None:
    """Retire everything, count what is left, print the figures, then assert."""
    left, problems = rig.retire_all_and_count()
    survived = sum(1 for t in trials if not t.violations)
    killed = sum(1 for t in trials if not t.exited_before_kill)
    lost = sum(1 for t in trials for v in t.violations if v.startswith("LOST KEY"))
    orphaned = sum(1 for t in trials for v in t.violations if v.startswith("ORPHAN")) + len(left)
    print(
        f"\ncrash suite [{label}] seed {SEED}: trials run {len(trials)} (killed mid-run {killed}), survived {survived}, "
        f"lost: {lost}, orphaned: {orphaned} (left after retiring everything: {len(left)})"
    )
    failed = [t for t in trials if t.violations]
    report = "\n".join(
        f"trial {i} {t.kind} killed at {t.kill}: "
        + "; ".join(t.violations[:6])
        + (f"; ... {len(t.violations) - 6} more" if len(t.violations) > 6 else "")
        for i, t in enumerate(trials)
        if t.violations
    )
    for t in trials:
        print(f"  {t.kind} killed at {t.kill}: " + (t.violations[0] if t.violations else "ok"))
    assert not failed and not problems and not left, (
        f"{len(failed)} of {len(trials)} trials broke an invariant (seed {SEED}):\n{report}\n"
        + "\n".join(problems)
        + "".join(f"\nstill tagged after retiring everything: {r.cloud}/{r.name}" for r in left)
    )


def test_apply_killed_at_random_points(rig):
    rng = random.Random(SEED)
    rig.add(BATCH)
    window = rig.timed("apply")  # an untouched run of one trial's work
    trials: list[Trial] = []
    for _ in range(APPLY_TRIALS):
        rig.add(BATCH)
        if rng.random() < 0.6:  # a delay anywhere from start-up to the end of the pushes
            kill, exited = rig.run_killed(("apply",), delay=rng.uniform(0.8 * rig.startup, window))
        else:  # right after the k-th AWS write (between two pushes)
            kill, exited = rig.run_killed(("apply",), writes=rng.randint(1, BATCH))
        trials.append(Trial("apply", kill, exited, rig.check()))
    finish(rig, trials, "apply")


def test_renew_and_revoke_replace_killed_at_random_points(rig):
    rng = random.Random(SEED + 1)
    windows = {
        "renew": rig.timed("renew", rig.certs[0]),
        "revoke": rig.timed("revoke", rig.certs[1], "--reason", "superseded", "--replace"),
    }
    trials: list[Trial] = []
    for i in range(2 * CLIENT_TRIALS):
        kind = "renew" if i % 2 == 0 else "revoke"
        rig.add(1)  # new work for the rerun of apply as well
        cert = rng.choice(rig.certs[:-1])
        args = ("renew", cert) if kind == "renew" else ("revoke", cert, "--reason", "superseded", "--replace")
        kill, exited = rig.run_killed(args, delay=rng.uniform(0.8 * rig.startup, 0.9 * windows[kind]))
        trials.append(Trial(kind, f"{kill} ({cert})", exited, rig.check()))
    finish(rig, trials, "renew + revoke --replace")
