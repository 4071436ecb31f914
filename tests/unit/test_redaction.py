"""Secrets never printed: a store URL's password (in the user-info and in a `?password=` query
parameter) and credentials in a provider's error text appear in none of stdout, stderr, the
GitHub summary and output files, nor a webhook body."""

import os
import socket
import subprocess
import sys

import pytest

from tests.support.webhook import webhook_server
from tests.unit.conftest import write_config

USERINFO_PW = "s3cr3t-UserInfo-pw"
QUERY_PW = "hunter2"  # short: below the length of registered literal secrets


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def run_everywhere(workdir, *args, env_extra=None, expect=1):
    summary, outputs = workdir / "summary.md", workdir / "outputs.txt"
    summary.write_text("")
    outputs.write_text("")
    env = {
        **os.environ,
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        **(env_extra or {}),
    }
    result = subprocess.run(
        [sys.executable, "-m", "sync", "--output", "json", "--github", *args],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=120,
    )
    assert result.returncode == expect, result.stderr
    assert "Traceback" not in result.stderr
    return result, summary.read_text(), outputs.read_text()


def assert_nowhere(secrets, *texts):
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"{secret!r} leaked in:\n{text}"


@pytest.mark.parametrize("command", [("apply",), ("plan",), ("list",), ("push", "api")])
def test_store_url_passwords_are_never_printed(workdir, command):
    url = (
        f"postgresql+psycopg://certsync:{USERINFO_PW}@127.0.0.1:{closed_port()}/certsync"
        f"?password={QUERY_PW}&connect_timeout=3"
    )
    with webhook_server() as hook:
        write_config(
            workdir / "sync.toml",
            f'\n[store]\nurl = "{url}"\n\n[notify]\nwebhook_url = "{hook.url}"\nexpiring_within = "100d"\n',
        )
        result, summary, outputs = run_everywhere(workdir, *command)
    assert "cannot open store postgresql+psycopg://" in result.stderr and "127.0.0.1" in result.stderr
    assert result.stderr.count("\n") == 1 + result.stderr.count("::error")  # one line (+ annotation)
    bodies = repr(hook.bodies)
    assert_nowhere([USERINFO_PW, QUERY_PW], result.stdout, result.stderr, summary, outputs, bodies)


def test_store_url_display_masks_query_passwords():
    from sync.store import redact_url

    shown = redact_url(f"postgresql+psycopg://u:{USERINFO_PW}@h/db?password={QUERY_PW}&sslmode=require")
    assert USERINFO_PW not in shown and QUERY_PW not in shown
    assert shown.startswith("postgresql+psycopg://u:***@h/db?") and "sslmode=require" in shown
    assert QUERY_PW not in redact_url(f"postgresql+psycopg://u@h/db?sslpassword={QUERY_PW}")


def test_logs_redact_masks_password_parameters():
    from sync import logs

    for text in (
        f"cannot open postgresql+psycopg://u@h/db?password={QUERY_PW}",
        f"conninfo: host=h password={QUERY_PW} dbname=x",
        f"dsn 'postgresql://u@h/db?sslmode=require&password={QUERY_PW}'",
    ):
        assert QUERY_PW not in logs.redact(text), text


def test_provider_error_text_is_redacted_in_every_output(workdir):
    """An AWS endpoint URL with credentials in it, unreachable: the failure's text (which repeats
    the URL) reaches the report JSON, the GitHub annotations, summary and outputs, and the webhook's
    failure event, masked in all of them."""
    endpoint = f"http://ep-user:{USERINFO_PW}@127.0.0.1:{closed_port()}/?password={QUERY_PW}"
    with webhook_server() as hook:
        write_config(
            workdir / "sync.toml",
            f"""
[destination.aws]
provider = "aws"
region = "us-east-1"
endpoint_url = "{endpoint}"

[certificate.api2]
profile = "tls-server"
common_name = "api2.example.internal"
destinations = ["aws"]

[notify]
webhook_url = "{hook.url}"
""",
        )
        subprocess.run([sys.executable, "-m", "sync", "init"], cwd=workdir, check=True, capture_output=True)
        plan, plan_summary, plan_outputs = run_everywhere(workdir, "plan")
        apply, summary, outputs = run_everywhere(workdir, "apply")
    assert '"status": "failed"' in apply.stdout and "::error" in apply.stderr
    assert any(e["type"] == "failure" for body in hook.bodies for e in body["events"])
    assert_nowhere(
        [USERINFO_PW, QUERY_PW],
        plan.stdout,
        plan.stderr,
        plan_summary,
        plan_outputs,
        apply.stdout,
        apply.stderr,
        summary,
        outputs,
        repr(hook.bodies),
    )
