"""The run lock on both backends: exclusive, waits up to store.lock_timeout, names the holder when
it gives up, takes over a lock past its TTL; two real `certsync apply` processes never both issue."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sync import config
from sync.app import App
from sync.clock import rfc3339, utcnow
from sync.errors import LockError, StoreError
from sync.store import RunLock, Store
from sync.store.models import Certificate, Lock
from tests.store.conftest import CERT_NAMES

REPO = Path(__file__).resolve().parents[2]
HELD = re.compile(
    r"another run holds the store lock \((?P<owner>[^,]+:\d+:[0-9a-f]{8}), "
    r"since (?P<since>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\)"
)


@pytest.fixture
def url(store_dir, backend) -> str:
    App(config.load("sync.toml")).init()
    return backend.url


def _store(url: str) -> Store:
    return Store(url)


class FakeClock:
    """Time that moves only when told (or when the lock sleeps): no test waits on the wall clock."""

    def __init__(self) -> None:
        self.now = utcnow()
        self.slept = 0.0
        self.on_sleep = lambda: None

    def __call__(self):
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += timedelta(seconds=seconds)
        self.on_sleep()


def _lock(store: Store, clock: FakeClock, *, timeout: float = 0, ttl: timedelta = timedelta(minutes=10)) -> RunLock:
    return RunLock(store, ttl=ttl, timeout=timedelta(seconds=timeout), clock=clock, sleep=clock.sleep)


def test_lock_is_exclusive_and_fails_at_once_by_default(url):
    holder, other, clock = _store(url), _store(url), FakeClock()
    with _lock(holder, clock).held(heartbeat=False):
        with pytest.raises(LockError) as caught:
            _lock(other, clock).acquire()
    assert clock.slept == 0  # timeout 0: no wait at all
    message = str(caught.value)
    assert HELD.match(message) and "\n" not in message and caught.value.exit_code == 1
    assert message.endswith("; set store.lock_timeout to wait for it")
    with _lock(other, clock).held(heartbeat=False):  # released
        pass
    holder.close(), other.close()


def test_lock_waits_for_the_holder_up_to_lock_timeout(url):
    holder, waiter, clock = _store(url), _store(url), FakeClock()
    held = _lock(holder, clock)
    held.acquire()
    clock.on_sleep = lambda: clock.slept >= 0.5 and held.release()  # the holder finishes after 0.5 s
    with _lock(waiter, clock, timeout=30).held(heartbeat=False):
        pass
    assert 0.5 <= clock.slept < 2
    holder.close(), waiter.close()


def test_lock_gives_up_after_lock_timeout_naming_the_holder(url):
    holder, waiter, clock = _store(url), _store(url), FakeClock()
    with _lock(holder, clock).held(heartbeat=False):
        with pytest.raises(LockError) as caught:
            _lock(waiter, clock, timeout=0.6).acquire()
    assert clock.slept == pytest.approx(0.6)
    assert HELD.match(str(caught.value)) and str(caught.value).endswith(
        "; gave up after waiting 0.6s (store.lock_timeout)"
    )
    holder.close(), waiter.close()


def test_a_stale_lock_is_taken_over(url):
    store, clock = _store(url), FakeClock()
    with store.session() as s:  # a runner that crashed two hours ago, its TTL past
        s.add(
            Lock(
                name="apply",
                owner="crashed-runner:4242:deadbeef",
                acquired_at=clock.now - timedelta(hours=2, minutes=1),
                expires_at=clock.now - timedelta(minutes=1),
            )
        )
    with _lock(store, clock).held(heartbeat=False):
        with store.session() as s:
            assert s.get(Lock, "apply").owner != "crashed-runner:4242:deadbeef"
    with store.session() as s:
        assert s.scalars(select(Lock)).all() == []
    store.close()


def _lose(store: Store, lock: RunLock) -> None:
    """What the end of its holder does to the lock itself, the holder's row left in place:
    PostgreSQL: the server ends the lock's connection (as when the process dies or its connection
    drops); SQLite: the descriptor holding the flock is closed (as the kernel does when it dies)."""
    if store.engine.dialect.name == "postgresql":
        pid = lock.guard.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,)).scalar_one()
            for _ in range(100):  # until the server has let go of it
                if not conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).scalar():
                    break
                time.sleep(0.02)
    else:
        os.close(lock.guard.fd)
        lock.guard.fd = None


def test_a_long_run_keeps_its_lock_by_renewing_it(url):
    """The holder renews its row every quarter of the TTL, and while it lives its lock is not taken
    over, even once its row's expiry is long past (it stopped renewing); when its lock dies (the
    process or its connection), the lock is taken over at once, its TTL not yet over."""
    store, other, clock = _store(url), _store(url), FakeClock()
    ttl = timedelta(minutes=10)
    holder = _lock(store, clock, ttl=ttl)
    holder.acquire()
    for _ in range(12):  # three TTLs, renewed every quarter
        clock.now += ttl / 4
        holder.renew()
    with pytest.raises(LockError, match="another run holds the store lock"):
        _lock(other, clock, ttl=ttl).acquire()
    clock.now += ttl + timedelta(seconds=1)  # no renewal for a whole TTL: a live holder keeps it
    with pytest.raises(LockError, match="another run holds the store lock"):
        _lock(other, clock, ttl=ttl).acquire()
    clock.now += timedelta(seconds=1)
    holder.renew()
    _lose(store, holder)  # its row still says it holds the lock until TTL ahead
    taker = _lock(other, clock, ttl=ttl)
    taker.acquire()
    with other.session() as s:
        assert s.get(Lock, "apply").owner == taker.owner
    taker.release()
    store.close(), other.close()


def test_the_heartbeat_renews_in_the_background(url):
    """held() starts a thread that calls renew every quarter TTL (a short TTL: 0.2 s)."""
    store, clock = _store(url), FakeClock()
    lock = _lock(store, clock, ttl=timedelta(seconds=0.2))
    with lock.held():
        with store.session() as s:
            first = s.get(Lock, "apply").expires_at
        clock.now += timedelta(hours=1)
        for _ in range(200):  # until the next beat has written the new expiry
            with store.session() as s:
                if s.get(Lock, "apply").expires_at > first:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the heartbeat never renewed the lock")
    store.close()


# -- real processes ---------------------------------------------------------------------------------


def _start_apply(store_dir: Path, lock_timeout: str, tag: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CERTSYNC_STORE__LOCK_TIMEOUT": lock_timeout, "PGAPPNAME": tag}
    return subprocess.Popen(
        [sys.executable, "-m", "sync", "apply"],
        cwd=store_dir,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_until_connected(store: Store, backend_name: str, tag: str, procs: list[subprocess.Popen]) -> None:
    """Until every process has opened the store (PostgreSQL: its connection shows in
    pg_stat_activity; SQLite: it has the file open); they try the lock right after."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if backend_name == "postgresql":
            with store.engine.connect() as conn:
                seen = conn.exec_driver_sql(
                    "SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE application_name = %s", (tag,)
                ).scalar()
        else:
            database = store.url.removeprefix("sqlite:///")
            seen = sum(1 for p in procs if _has_open(p.pid, database))
        if seen >= len(procs):
            time.sleep(0.3)
            return
        assert all(p.poll() is None for p in procs), "an apply ended while the lock was held"
        time.sleep(0.05)
    pytest.fail("the apply processes did not open the store within 30s")


def _has_open(pid: int, path: str) -> bool:
    try:
        return any(os.readlink(fd) == path for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _versions(store: Store) -> dict[str, list[int]]:
    with store.session() as s:
        rows = s.execute(select(Certificate.name, Certificate.version).order_by(Certificate.name, Certificate.version))
        found: dict[str, list[int]] = {}
        for name, version in rows:
            found.setdefault(name, []).append(version)
        return found


def _issued(stdout: str) -> list[str]:
    return sorted(re.findall(r"^issue\s+(\S+)", stdout, re.M))


def test_two_applies_wait_for_each_other_and_issue_once(url, store_dir, backend):
    """Both start while a third run holds the lock and wait (lock_timeout 60s); once it is released
    one takes it and issues, the other waits again, then finds nothing to do."""
    gate = _store(url)
    tag = f"certsync-race-{os.getpid()}"
    with RunLock(gate).held():
        procs = [_start_apply(store_dir, "60s", tag) for _ in range(2)]
        _wait_until_connected(gate, backend.name, tag, procs)
        assert all(p.poll() is None for p in procs), "an apply did not wait for the lock"
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    issued = [_issued(out) for out, _ in outputs]
    assert sorted(issued, key=len) == [[], CERT_NAMES], outputs
    assert any("nothing to do" in out for out, _ in outputs), outputs
    assert _versions(gate) == {name: [1] for name in CERT_NAMES}
    gate.close()


def test_two_applies_at_once_without_waiting_issue_once(url, store_dir, backend):
    """lock_timeout 0, started together: one issues; the other either finds the lock held (exit 1,
    one line naming the holder) or, if it came second, nothing to do. Never both issue."""
    procs = [_start_apply(store_dir, "0", "certsync-at-once") for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    issued = [_issued(out) for out, _ in outputs]
    assert sorted(issued, key=len) == [[], CERT_NAMES], outputs
    for proc, (out, err) in zip(procs, outputs):
        if proc.returncode == 1:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and HELD.match(lines[0].removeprefix("error: ")), err
        else:
            assert proc.returncode == 0, err
    store = _store(url)
    assert _versions(store) == {name: [1] for name in CERT_NAMES}
    store.close()


def test_apply_exits_1_with_one_line_when_the_lock_is_held(url, store_dir):
    gate = _store(url)
    with RunLock(gate).held():
        with gate.session() as s:
            holder = s.scalars(select(Lock)).one()
        proc = _start_apply(store_dir, "0", "certsync-held")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    match = HELD.match(lines[0].removeprefix("error: "))
    assert match and match["owner"] == holder.owner
    assert match["since"] == rfc3339(holder.acquired_at)
    with gate.session() as s:
        assert s.scalar(select(func.count()).select_from(Certificate)) == 0
    gate.close()


# -- the database's clock, and fencing --------------------------------------------------------------


def _skew_local_clock(monkeypatch, skew: timedelta) -> None:
    """This process's idea of the time (sync.clock.utcnow) moves by `skew`; the database's does not."""
    import sync.clock
    from datetime import datetime as real

    class Skewed(real):
        @classmethod
        def now(cls, tz=None):
            return real.now(tz) + skew

    monkeypatch.setattr(sync.clock, "datetime", Skewed)


def test_a_client_whose_clock_runs_ahead_does_not_take_a_live_lock(url, monkeypatch):
    """Expiry is the database's clock's call: a runner two hours ahead does not find the live
    lock of another runner expired (it would delete it and both would write)."""
    holder, other = _store(url), _store(url)
    with RunLock(holder).held(heartbeat=False):
        _skew_local_clock(monkeypatch, timedelta(hours=2))
        with pytest.raises(LockError, match="another run holds the store lock"):
            RunLock(other).acquire()
        monkeypatch.undo()
    holder.close(), other.close()


def test_a_client_whose_clock_runs_behind_writes_a_live_expiry(url, monkeypatch):
    """A runner two hours behind takes the lock with an expiry in the database's future, so nobody
    takes it over while it runs."""
    holder, other = _store(url), _store(url)
    _skew_local_clock(monkeypatch, timedelta(hours=-2))
    lock = RunLock(holder)
    lock.acquire()
    lock.renew()
    monkeypatch.undo()
    with pytest.raises(LockError, match="another run holds the store lock"):
        RunLock(other).acquire()
    lock.release()
    holder.close(), other.close()


def test_a_holder_whose_row_is_taken_knows_it_lost_the_lock(url):
    """A holder whose lock went (its connection dropped; SQLite: simulated) while it lived is
    taken over at once; renewing then updates no row: the holder records it and check() stops it
    before its next write; release does not delete the new holder's row."""
    store, other, clock = _store(url), _store(url), FakeClock()
    holder = _lock(store, clock)
    holder.acquire()
    holder.check()  # held: no error
    _lose(store, holder)
    taker = _lock(other, clock)
    taker.acquire()
    holder.renew()
    assert holder.lost
    with pytest.raises(LockError, match=r"lost the store lock .*stopping") as caught:
        holder.check()
    assert "\n" not in str(caught.value)
    holder.release()
    with other.session() as s:
        assert s.get(Lock, "apply").owner == taker.owner
    taker.release()
    store.close(), other.close()


def test_postgresql_a_lost_lock_connection_is_a_lost_lock_at_the_next_check(backend, url):
    """Fencing without waiting for the heartbeat: once the server ended the lock's connection, the
    very next check() (before any write) fails with one line, and another run may take the lock."""
    if backend.name != "postgresql":
        pytest.skip("PostgreSQL's advisory lock")
    store, other = _store(url), _store(url)
    with RunLock(store).held(heartbeat=False) as held:
        held.check()
        _lose(store, held)
        with pytest.raises(LockError, match=r"lost the store lock \(its database connection was lost") as caught:
            held.check()
        assert "\n" not in str(caught.value)
        with RunLock(other).held(heartbeat=False):
            pass
    store.close(), other.close()


def test_sqlite_lock_file_is_private_and_not_inherited(backend, url):
    """SQLite: the flock is on certsync.db.lock next to the database, mode 0600, close-on-exec."""
    if backend.name != "sqlite":
        pytest.skip("SQLite's lock file")
    import fcntl

    store = _store(url)
    with RunLock(store).held(heartbeat=False) as held:
        path = Path(store.engine.url.database + ".lock")
        assert path.exists() and path.stat().st_mode & 0o777 == 0o600
        assert fcntl.fcntl(held.guard.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    store.close()


def test_a_deleted_lock_row_is_lost_and_a_failed_heartbeat_too(url, monkeypatch):
    store, clock = _store(url), FakeClock()
    holder = _lock(store, clock)
    holder.acquire()
    with store.session() as s:  # someone deleted our row
        s.execute(Lock.__table__.delete())
    holder.renew()
    with pytest.raises(LockError, match="lost the store lock"):
        holder.check()
    holder.release()
    second = _lock(store, clock, ttl=timedelta(seconds=0.2))

    def broken(*_a, **_k):
        raise StoreError("store error: OperationalError: server closed the connection")

    with second.held():
        monkeypatch.setattr(second, "renew", broken)  # the heartbeat's next renewal fails
        for _ in range(100):
            if second.lost:
                break
            time.sleep(0.05)
        with pytest.raises(LockError, match="lost the store lock .*heartbeat"):
            second.check()
    store.close()


def test_apply_stops_before_its_next_write_once_the_lock_is_lost(url, store_dir):
    """A holder that lost the lock (its heartbeat found the row gone) issues and pushes nothing
    more and records nothing: the run fails with one line."""
    from sync.app import App
    from tests.support.memory import MemoryProvider

    cfg = config.load("sync.toml")
    provider = MemoryProvider()
    app = App(cfg, providers=lambda _name: provider)
    with app.lock() as held:
        with app.store.session() as s:
            s.execute(Lock.__table__.delete())
        held.renew()  # what the heartbeat does every quarter TTL
        with pytest.raises(LockError, match="lost the store lock") as caught:
            from sync.reconcile.apply import execute
            from sync.reconcile.snapshot import snapshot

            snap = snapshot(cfg, app.store, app.providers)
            execute(app, snap.plan(app.now))
    assert "\n" not in str(caught.value)
    assert _versions(app.store) == {}
    app.close()


# -- a crashed run never blocks the next ----------------------------------------------------------

SLOW_CERTS = [f"slow{i}" for i in range(8)]
SLOW_CONFIG = (
    '\n[profile.slow]\nca = "issuing"\nkey = "rsa-4096"\nvalidity = "90d"\n'
    'allowed_domains = ["*.example.internal"]\n'
    + "".join(
        f'\n[certificate.{name}]\nprofile = "slow"\ndns_names = ["{name}.example.internal"]\n' for name in SLOW_CERTS
    )
)

HOLDER = """
import sys, time
from sync.store import RunLock, Store
lock = RunLock(Store(sys.argv[1]))
lock.acquire()
print(lock.owner, flush=True)
time.sleep(600)
"""


def _lock_row(store: Store) -> Lock | None:
    with store.session() as s:
        return s.get(Lock, "apply")


def _apply(store_dir: Path, lock_timeout: str = "0") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CERTSYNC_STORE__LOCK_TIMEOUT": lock_timeout}
    return subprocess.run(
        [sys.executable, "-m", "sync", "apply"],
        cwd=store_dir,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )


def test_a_killed_apply_never_blocks_the_next(url, store_dir):
    """An apply SIGKILLed while it holds the lock (issuing eight rsa-4096 certificates) leaves its
    lock row behind, but the lock itself died with it: an apply started at once, with lock_timeout 0,
    takes it and finishes the work (exit 0)."""
    with open(store_dir / "sync.toml", "a") as f:
        f.write(SLOW_CONFIG)
    store = _store(url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync", "apply"],
        cwd=store_dir,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _lock_row(store) is None:
            assert proc.poll() is None, "the apply ended before it held the lock"
            assert time.monotonic() < deadline, "the apply never took the lock"
            time.sleep(0.02)
        time.sleep(0.3)  # well inside its work: the rsa-4096 keys
        assert proc.poll() is None, "the apply finished before it could be killed: make it slower"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -9
    assert _lock_row(store) is not None  # the crashed run's record is still there
    rerun = _apply(store_dir, "0")
    assert rerun.returncode == 0, rerun.stderr
    assert _versions(store) == {name: [1] for name in sorted(CERT_NAMES + SLOW_CERTS)}
    assert _lock_row(store) is None  # released at the end of the rerun
    store.close()


def test_a_live_holder_in_another_process_still_blocks_and_its_death_frees_the_lock(url, store_dir):
    """A helper process holds the lock: apply fails at once (exit 1, one line naming the helper),
    or waits lock_timeout and gives up; once the helper is SIGKILLed, the next apply runs (exit 0)."""
    store = _store(url)
    helper = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
        stdout=subprocess.PIPE,
    )
    try:
        owner = helper.stdout.readline().strip()
        assert owner, "the helper did not take the lock"
        refused = _apply(store_dir, "0")
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and (m := HELD.match(lines[0].removeprefix("error: "))) and m["owner"] == owner
        waited = _apply(store_dir, "1s")
        assert waited.returncode == 1 and waited.stderr.strip().endswith(
            "gave up after waiting 1s (store.lock_timeout)"
        ), waited.stderr
        assert _versions(store) == {}
    finally:
        helper.kill()
        helper.wait(timeout=30)
    rerun = _apply(store_dir, "0")
    assert rerun.returncode == 0, rerun.stderr
    assert _versions(store) == {name: [1] for name in CERT_NAMES}
    store.close()
