"""Webhook alerts: events built from a run (pure), JSON and Slack bodies, delivery to a local
listener after a real `certsync apply`, a controlled clock through the library, and a failing
webhook that only warns, without ever printing its URL."""

import json
import socket
import subprocess
import sys
from datetime import datetime, timedelta, UTC
from types import SimpleNamespace

import pytest

from sync import config, notify
from sync.app import App
from sync.reconcile.report import Report, Result
from sync.clock import utcnow
from sync.reconcile.deadline import MAX_DURATION_REACHED
from sync.inventory import DeploymentView
from sync.reconcile.plan import Action
from tests.support.memory import MemoryProvider
from tests.support.webhook import TOKEN, webhook_server
from tests.unit.conftest import write_config

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def run(*args, cwd, env=None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "sync", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def row(name, days, state="active", version=1):
    return SimpleNamespace(name=name, state=state, version=version, not_after=NOW + timedelta(days=days))


def view(cert, dest, carried, current, version=1, current_version=1):
    return DeploymentView(cert, dest, cert, carried, version, current, current_version, NOW - timedelta(days=1))


# --- pure: events and bodies ------------------------------------------------------------------------


def test_build_events_from_report_inventory_and_deployments():
    report = Report(
        [
            Result(Action("unchanged", "web", "aws", "web"), "unchanged"),
            Result(Action("renew", "api", reason="expires in 9.0 days"), "done", detail="version 2, serial ab"),
            Result(Action("push", "api", "aws", "api", "new certificate version"), "failed", "ProviderError: boom"),
            Result(Action("push", "db", "gcp", "db"), "skipped", MAX_DURATION_REACHED),
        ],
        stopped="max duration 30m reached",
    )
    inventory = SimpleNamespace(
        certificates=[
            row("api", 89, version=2),
            row("old", 5),
            row("gone", -3),
            row("rev", 2, state="revoked"),
            row("retired", 1, state="retired"),
        ],
        authorities=[
            {"name": "issuing", "subject": "CN=Issuing", "not_after": "2030-01-20T00:00:00Z"},
            {"name": "root", "subject": "CN=Root", "not_after": "2040-01-01T00:00:00Z"},
        ],
    )
    deployments = [view("api", "aws", 1, 2, 1, 2), view("web", "aws", 5, 5), view("rev", "gcp", 7, None, 3, None)]
    events = notify.build_events(
        report,
        inventory,
        deployments,
        now=NOW,
        expiring_within=timedelta(days=30),
        revocations=[
            {"certificate": "rev", "serial": "cd", "reason": "keyCompromise", "ca": "issuing", "crl_number": 4}
        ],
    )
    kinds = [(e.type, e.severity, e.certificate or e.ca) for e in events]
    assert kinds == [
        ("failure", "error", "api"),
        ("failure", "error", None),
        ("expiring", "error", "gone"),
        ("stale_copy", "warning", "api"),
        ("stale_copy", "warning", "rev"),
        ("expiring", "warning", "old"),
        ("ca_expiring", "warning", "issuing"),
        ("renewal", "info", "api"),
        ("revocation", "info", "rev"),
    ]
    by_type = {e.type: e for e in reversed(events)}  # the first of each type
    assert "1 action(s) not started" in events[1].message and "max duration 30m reached" in events[1].message
    assert by_type["stale_copy"].message.startswith(
        "api in aws/api carries version 1; the store's current version is 2"
    )
    assert "no active version" in events[4].message
    assert "expired 3.0 days ago" in events[2].message
    assert by_type["ca_expiring"].not_after == datetime(2030, 1, 20, tzinfo=UTC)


def test_nothing_to_say_means_no_events():
    inventory = SimpleNamespace(certificates=[row("api", 80)], authorities=[])
    assert (
        notify.build_events(
            Report([Result(Action("issue", "api"), "done")]),
            inventory,
            [view("api", "a", 1, 1)],
            now=NOW,
            expiring_within=timedelta(days=30),
        )
        == []
    )


def _events():
    return [
        notify.Event(
            "failure", "error", "push api -> aws/api: <bad> & worse", "api", destination="aws", remote_name="api"
        ),
        notify.Event(
            "expiring", "warning", "web version 1 expires in 3.0 days", "web", not_after=NOW + timedelta(days=3)
        ),
    ]


def test_json_body():
    body = notify.render(_events(), "json", command="apply", host="h1", now=NOW, summary={"failed": 1})
    assert body == {
        "source": "certsync",
        "command": "apply",
        "host": "h1",
        "time": "2030-01-01T00:00:00Z",
        "ok": False,
        "summary": {"failed": 1},
        "counts": {"failure": 1, "expiring": 1},
        "events": [
            {
                "type": "failure",
                "severity": "error",
                "message": "push api -> aws/api: <bad> & worse",
                "certificate": "api",
                "ca": None,
                "destination": "aws",
                "remote_name": "api",
                "not_after": None,
            },
            {
                "type": "expiring",
                "severity": "warning",
                "message": "web version 1 expires in 3.0 days",
                "certificate": "web",
                "ca": None,
                "destination": None,
                "remote_name": None,
                "not_after": "2030-01-04T00:00:00Z",
            },
        ],
    }
    json.dumps(body)


def test_slack_body_shape_escaping_and_limits():
    body = notify.render(_events(), "slack", command="apply", host="h1", now=NOW)
    assert set(body) == {"text", "blocks"}
    assert body["text"] == "certsync apply: 1 failure, 1 expiring"
    header, failures, expiring, context = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "emoji": True, "text": body["text"]}}
    assert failures["type"] == "section" and failures["text"]["type"] == "mrkdwn"
    assert "&lt;bad&gt; &amp; worse" in failures["text"]["text"] and "<bad>" not in failures["text"]["text"]
    assert expiring["text"]["text"].startswith("*Certificates expiring* (1)")
    assert context["type"] == "context" and "h1" in context["elements"][0]["text"]
    many = [notify.Event("stale_copy", "warning", "x" * 200, f"c{i}") for i in range(100)]
    big = notify.render(many, "slack", command="apply", host="h1", now=NOW)
    section = big["blocks"][1]["text"]["text"]
    assert len(section) <= notify.SLACK_SECTION_LIMIT and section.endswith("more")
    assert len(big["blocks"][0]["text"]["text"]) <= notify.SLACK_HEADER_LIMIT


# --- delivery -------------------------------------------------------------------------------------

NOTIFY_FAILING_CERT = """
[certificate.evil]
profile = "tls-server"
common_name = "evil.example.com"
"""


def test_real_apply_posts_json_to_the_webhook(workdir):
    """The URL comes from the environment (the way to keep a Slack token out of the file)."""
    write_config(workdir / "sync.toml", NOTIFY_FAILING_CERT + '\n[notify]\nexpiring_within = "100d"\n')
    with webhook_server() as hook:
        assert run("init", cwd=workdir).returncode == 0
        result = run("apply", cwd=workdir, env={"CERTSYNC_NOTIFY__WEBHOOK_URL": hook.url})
    assert result.returncode == 1, result.stderr  # evil fails policy: the run fails, the alert goes out
    assert len(hook.received) == 1
    request = hook.received[0]
    assert request["content_type"] == "application/json"
    body = request["body"]
    assert body["source"] == "certsync" and body["command"] == "apply" and body["ok"] is False
    assert body["summary"] == {"issue": 1, "failed": 1}
    assert [(e["type"], e["certificate"]) for e in body["events"]] == [("failure", "evil"), ("expiring", "api")]
    assert "allowed_domains" in body["events"][0]["message"]
    assert TOKEN not in result.stderr + result.stdout


def test_real_apply_posts_slack_blocks(workdir):
    with webhook_server() as hook:
        write_config(
            workdir / "sync.toml",
            f'\n[notify]\nwebhook_url = "{hook.url}"\nformat = "slack"\nexpiring_within = "100d"\n',
        )
        assert run("init", cwd=workdir).returncode == 0
        result = run("-q", "apply", cwd=workdir)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    body = hook.bodies[0]
    assert body["text"] == "certsync apply: 1 expiring"
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "context"]
    assert "api version 1 expires in 90.0 days" in body["blocks"][1]["text"]["text"]


def test_failed_webhook_is_a_warning_without_the_url(workdir):
    with webhook_server() as hook:
        hook.statuses.extend([500, 503])
        write_config(workdir / "sync.toml", f'\n[notify]\nwebhook_url = "{hook.url}"\nexpiring_within = "100d"\n')
        run("init", cwd=workdir)
        result = run("-q", "apply", cwd=workdir)
        json_logs = run("-q", "--log-format", "json", "push", "api", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert len(hook.received) == 3  # one retry, then the second run's alert got through
    assert result.stderr == ("warning: notify.webhook_url: alert not delivered: HTTP 503 after 2 attempt(s)\n")
    assert json_logs.returncode == 0 and json_logs.stderr == ""
    for text in (result.stdout, result.stderr, json_logs.stdout):
        assert TOKEN not in text and "127.0.0.1" not in text


def test_unreachable_webhook(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook/{TOKEN}"
    with pytest.raises(notify.DeliveryError) as caught:
        notify.send(url, {"x": 1}, timeout=2, pause=0)
    assert str(caught.value) == "Connection refused after 2 attempt(s)"
    with pytest.raises(notify.DeliveryError, match="not an http"):
        notify.send("file:///etc/passwd", {}, pause=0)


# --- the library on a controlled clock --------------------------------------------------------------

DESTINATION = """
[destination.vault]
provider = "aws"
region = "eu-west-1"
"""


def test_expiry_renewal_and_stale_copy_on_a_controlled_clock(workdir):
    base = (
        (workdir / "sync.toml")
        .read_text()
        .replace(
            'dns_names = ["api.example.internal", "www.example.internal"]',
            'dns_names = ["api.example.internal", "www.example.internal"]\ndestinations = ["vault"]',
        )
    )
    provider = MemoryProvider()
    with webhook_server() as hook:
        write_config(
            workdir / "sync.toml",
            DESTINATION + f'\n[notify]\nwebhook_url = "{hook.url}"\nexpiring_within = "30d"\n',
            base=base,
        )
        cfg = config.load("sync.toml")
        App(cfg).init()
        t0 = utcnow()
        first = App(cfg, providers=lambda d: provider, now=t0).apply()
        assert first.summary() == {"issue": 1, "push": 1}
        outcome = notify.after_run(App(cfg, now=t0), "apply", first)
        assert outcome.events == [] and not outcome.sent and not hook.received  # nothing to say

        # 65 days later, before the run: v1 expires within 30 days
        later = t0 + timedelta(days=65)
        outcome = notify.after_run(App(cfg, now=later), "list", None)
        assert [(e.type, e.certificate) for e in outcome.events] == [("expiring", "api")] and outcome.sent
        assert "expires in 25.0 days" in hook.bodies[-1]["events"][0]["message"]
        # an hour later (an hourly job): the same standing condition is not alerted again...
        assert notify.after_run(App(cfg, now=later + timedelta(hours=1)), "list", None).events == []
        # ...until repeat_every (24h) has passed
        again = notify.after_run(App(cfg, now=later + timedelta(hours=25)), "list", None)
        assert [e.type for e in again.events] == ["expiring"] and again.sent

        # the run renews, but the cloud is down: a failure, a renewal, and the cloud keeps v1
        provider.fail = True
        report = App(cfg, providers=lambda d: provider, now=later).apply()
        assert report.summary() == {"renew": 1, "failed": 1}
        outcome = notify.after_run(App(cfg, now=later), "apply", report, pause=0)
        assert [e.type for e in outcome.events] == ["failure", "stale_copy", "renewal"]
        body = hook.bodies[-1]
        assert body["events"][1]["message"].startswith(
            "api in vault/api carries version 1; the store's current version is 2"
        )
        assert body["events"][2]["message"].startswith("api renewed (expires in 25.0 days): version 2")

        # the cloud is back: the next run repairs it, and there is nothing left to say
        provider.fail = False
        report = App(cfg, providers=lambda d: provider, now=later).apply()
        assert report.summary() == {"push": 1}
        assert notify.after_run(App(cfg, now=later), "apply", report).events == []
    assert len(hook.received) == 3


def test_no_notify_section_means_no_alert(workdir):
    cfg = config.load("sync.toml")
    App(cfg).init()
    assert notify.after_run(App(cfg), "apply", App(cfg).apply()) is None


def test_webhook_url_must_be_http_and_is_never_echoed():
    with pytest.raises(config.ConfigError) as caught:
        config.from_dict({"notify": {"webhook_url": f"hooks.slack.com/services/T/B/{TOKEN}"}}, source="sync.toml")
    assert str(caught.value) == "sync.toml: notify.webhook_url: must be an http:// or https:// URL"
