"""Cheaper bookkeeping: alerts and retirement read and write with set-based queries whose number
does not grow with the number of certificates, and alerts never load key material or every
version ever stored."""

from contextlib import contextmanager

from sqlalchemy import event

from sync import config, notify
from sync.app import App
from tests.support.memory import MemoryCloud, MemoryProvider
from tests.support.webhook import webhook_server
from tests.unit.conftest import write_config


def fresh(workdir, n: int):
    """A folder of its own per size (a store each)."""
    import os

    folder = workdir / f"n{n}"
    folder.mkdir(exist_ok=True)
    (folder / "sync.toml").write_text((workdir / "sync.toml").read_text())
    os.chdir(folder)
    return folder


def certs_config(workdir, n: int, extra: str = "", names: int | None = None):
    body = '\n[destination.vault]\nprovider = "aws"\nregion = "eu-west-1"\nmax_calls_per_second = 5000\n' + extra
    body += "".join(
        f'\n[certificate.c{i}]\nprofile = "tls-server"\ncommon_name = "c{i}.example.internal"\n'
        f'destinations = ["vault"]\n'
        for i in range(n if names is None else names)
    )
    write_config(workdir / "sync.toml", body)
    return config.load("sync.toml")


@contextmanager
def statements(app: App):
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(app.store.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(app.store.engine, "before_cursor_execute", note)


def notify_statements(workdir, n: int) -> list[str]:
    workdir = fresh(workdir, n)
    with webhook_server() as hook:
        # every certificate "expires" within 400 days: n standing events, each remembered
        cfg = certs_config(workdir, n, f'\n[notify]\nwebhook_url = "{hook.url}"\nexpiring_within = "400d"\n')
        App(cfg).init()
        cloud = MemoryCloud()
        App(cfg, providers=lambda d: MemoryProvider(cloud)).apply()
        App(cfg, providers=lambda d: MemoryProvider(cloud)).renew("c0")  # versions beyond the newest
        app = App(cfg)
        with statements(app) as seen:
            outcome = notify.after_run(app, "list", None)
        assert outcome.sent and sum(e.type == "expiring" for e in outcome.events) == n + 1
        assert notify.after_run(App(cfg), "list", None).events == []  # remembered, all of them
    return seen


def test_alert_queries_do_not_grow_with_n_and_read_no_keys(workdir):
    small, large = notify_statements(workdir, 5), notify_statements(workdir, 40)
    assert len(small) == len(large), (len(small), len(large))
    for statement in large:  # (the few CA rows are read whole, as before)
        assert "certificates.key_enc" not in statement and "certificates.cert_der" not in statement


def test_retiring_many_certificates_takes_a_fixed_number_of_queries(workdir):
    counts = []
    for n in (5, 40):
        folder = fresh(workdir, n)
        cfg = certs_config(folder, n)
        App(cfg).init()
        cloud = MemoryCloud()
        App(cfg, providers=lambda d: MemoryProvider(cloud)).apply()
        gone = certs_config(folder, n, names=0)  # every certificate removed from the config
        app = App(gone, providers=lambda d: MemoryProvider(cloud))
        with statements(app) as seen:
            report = app.apply()
        assert report.summary() == {"delete": n} and not cloud
        counts.append(sum(1 for s in seen if s.lstrip().upper().startswith(("UPDATE", "SELECT", "INSERT"))))
        with App(gone).store.transaction() as tx:
            assert {r.state for r in tx.certificates.latest_facts() if r.name != "api"} == {"retired"}
    assert counts[0] == counts[1], counts
