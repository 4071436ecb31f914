"""Cron safety: --max-duration stops starting new actions, --log-format json writes one JSON
object per line on stderr, -q keeps warnings and errors only, and nothing secret is ever logged."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from click.testing import CliRunner

from sync import config, logs
from sync.app import App
from sync.reconcile.deadline import MAX_DURATION_REACHED, Deadline
from sync.clock import utcnow
from sync.cli import cli
from tests.support.memory import MemoryProvider
from tests.unit.conftest import write_config

FAILING_CERT = """
[certificate.evil]
profile = "tls-server"
common_name = "evil.example.com"
"""


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sync", *args], capture_output=True, text=True, cwd=cwd)


def json_lines(text: str) -> list[dict]:
    records = [json.loads(line) for line in text.splitlines()]
    for record in records:
        assert list(record)[:6] == ["time", "level", "event", "certificate", "destination", "message"]
        assert record["time"].endswith("Z") and record["level"] in ("debug", "info", "warning", "error")
    return records


class Ticks:
    """A clock that moves one second each time it is read: the n-th check of a deadline is at n."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        value, self.now = self.now, self.now + 1
        return value


def test_deadline():
    ticks = Ticks()
    deadline = Deadline(timedelta(seconds=2), clock=ticks)
    assert str(deadline) == "2s" and not deadline.reached
    assert not deadline.expired()
    assert deadline.expired() and deadline.reached
    assert str(Deadline(timedelta(minutes=30))) == "30m"


@pytest.fixture
def three_certs(workdir):
    extra = "".join(
        f'\n[certificate.{name}]\nprofile = "tls-server"\ncommon_name = "{name}.example.internal"\n'
        f'destinations = ["vault"]\n'
        for name in ("web", "db", "mq")
    )
    write_config(workdir / "sync.toml", '\n[destination.vault]\nprovider = "aws"\nregion = "eu-west-1"\n' + extra)
    cfg = config.load("sync.toml")
    App(cfg).init()
    return cfg


def test_max_duration_skips_what_is_not_started(three_certs):
    provider = MemoryProvider()
    # clock reads: 0 when made, 1 before issuing (in time), 2 first push (in time), 3+ too late
    deadline = Deadline(timedelta(seconds=3), clock=Ticks())
    report = App(three_certs, providers=lambda d: provider).apply(deadline=deadline)
    assert report.summary() == {"issue": 4, "push": 1, "skipped": 2}
    assert report.stopped == "max duration 3s reached" and not report.failed
    skipped = [r for r in report.results if r.status == "skipped"]
    assert {r.error for r in skipped} == {MAX_DURATION_REACHED}
    assert len(provider.secrets) == 1
    # the next run picks up where this one stopped
    report = App(three_certs, providers=lambda d: provider).apply()
    assert report.summary() == {"push": 2, "unchanged": 1} and report.stopped is None


def test_max_duration_before_issuing_skips_the_certificates_and_their_pushes(three_certs):
    deadline = Deadline(timedelta(seconds=1), clock=Ticks())
    report = App(three_certs, providers=lambda d: MemoryProvider()).apply(deadline=deadline)
    assert report.summary() == {"skipped": 7}
    assert all(r.error == MAX_DURATION_REACHED for r in report.results)
    assert report.stopped and not App(three_certs).inventory().certificates


def test_cli_max_duration_exits_1(workdir, monkeypatch):
    runner = CliRunner()
    cfg = config.load("sync.toml")
    App(cfg).init()
    monkeypatch.setattr(Deadline, "expired", lambda self: setattr(self, "reached", True) or True)
    result = runner.invoke(cli, ["apply", "--max-duration", "30m"])
    assert result.exit_code == 1
    assert result.stderr == "error: run stopped: max duration 30m reached; 1 action(s) not started\n"
    result = runner.invoke(cli, ["--output", "json", "apply", "--max-duration", "30m"])
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False
    result = runner.invoke(cli, ["apply", "--max-duration", "0m"])
    assert result.exit_code == 2 and "Invalid value for '--max-duration'" in result.stderr


def test_json_logs_one_object_per_line_and_nothing_secret(workdir, master_key_env):
    with open(workdir / "sync.toml", "a") as f:
        f.write(FAILING_CERT)
    assert run("init", cwd=workdir).returncode == 0
    result = run("--log-format", "json", "apply", cwd=workdir)
    assert result.returncode == 1
    records = json_lines(result.stderr)
    assert [(r["level"], r["event"], r["certificate"]) for r in records] == [
        ("info", "issue.done", "api"),
        ("error", "issue.failed", "evil"),
        ("info", "run.finished", None),
    ]
    assert "allowed_domains" in records[1]["message"] and records[1]["status"] == "failed"
    assert records[2]["command"] == "apply" and records[2]["message"] == "1 failed, 1 issue"
    assert "issue      api" in result.stdout  # the report still goes to stdout
    for text in (result.stdout, result.stderr):
        assert master_key_env not in text and "PRIVATE KEY" not in text

    quiet = run("-q", "--log-format", "json", "push", "api", cwd=workdir)  # -q: warnings and errors only
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


def test_json_config_error_is_a_json_line(workdir):
    result = run("--log-format", "json", "--config", "missing.toml", "plan", cwd=workdir)
    assert result.returncode == 2
    [record] = json_lines(result.stderr)
    assert record["level"] == "error" and record["message"].startswith("missing.toml: config file not found")


def test_text_logs_stay_as_they_were(workdir):
    write_config(workdir / "sync.toml", FAILING_CERT)
    App(config.load("sync.toml")).init()
    result = CliRunner().invoke(cli, ["-q", "apply"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: issue evil -> evil: profile 'tls-server'")
    assert result.stderr.count("\n") == 1


def test_redaction():
    pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----"
    logs.add_secret("hunter2-is-a-password")
    text = logs.redact(
        f"key {pem} url https://user:pw@db.example/x?sig=abc&se=1 hooks.slack.com/services/T/B/C "
        "and hunter2-is-a-password"
    )
    assert text == (
        "key [redacted PEM] url https://[redacted]@db.example/x?[redacted] hooks.slack.com/[redacted] and [redacted]"
    )
    record = logs.logging.LogRecord("certsync.apply", logs.logging.ERROR, __file__, 1, "failed: %s", (pem,), None)
    record.event, record.certificate = "push.failed", "api"
    document = json.loads(logs.JsonFormatter().format(record))
    assert document["message"] == "failed: [redacted PEM]" and document["event"] == "push.failed"


def test_json_logs_of_pushes_name_destination(three_certs, capsys):
    logs.setup("json")
    try:
        provider = MemoryProvider()
        App(three_certs, providers=lambda d: provider, now=utcnow()).apply()
    finally:
        logs.setup("text")
    records = json_lines(capsys.readouterr().err)
    pushes = [r for r in records if r["event"] == "push.done"]
    assert sorted(r["certificate"] for r in pushes) == ["db", "mq", "web"]
    assert {r["destination"] for r in pushes} == {"vault"} and {r["remote_name"] for r in pushes} == {"db", "mq", "web"}


def test_json_mode_turns_other_libraries_warnings_into_json(capsys):
    """SDK loggers (and Python warnings, through logging.captureWarnings) never print plain text."""
    import logging

    logs.setup("json", quiet=True)
    try:
        logging.getLogger("providers.gcp").warning("pruning failed for %s", "api")
        logging.getLogger("botocore").info("not shown: below warning")
    finally:
        logs.setup("text")
    records = json_lines(capsys.readouterr().err)
    assert [(r["level"], r["event"]) for r in records] == [("warning", "providers.gcp")]
    assert records[0]["message"] == "pruning failed for api"
