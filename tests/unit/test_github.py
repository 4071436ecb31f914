"""sync/cli/github.py (JSON documents -> step summary, annotations, outputs) and `certsync --github`."""

import json
import os
import subprocess
import sys

import pytest

from sync.cli import github

REPORT = {
    "results": [
        {
            "action": "issue",
            "certificate": "api",
            "destination": None,
            "remote_name": None,
            "reason": "not issued yet",
            "status": "done",
            "error": None,
            "detail": "version 1, serial ab",
        },
        {
            "action": "push",
            "certificate": "api",
            "destination": "aws",
            "remote_name": "api",
            "reason": "new certificate version",
            "status": "done",
            "error": None,
            "detail": "v-1",
        },
        {
            "action": "push",
            "certificate": "db",
            "destination": "aws",
            "remote_name": "db|tls",
            "reason": "new certificate version",
            "status": "failed",
            "error": "secret 'db' exists and is not managed by certsync: 100% <foreign>\nsecond line",
            "detail": "",
        },
        {
            "action": "push",
            "certificate": "web",
            "destination": "aws",
            "remote_name": "web",
            "reason": "",
            "status": "unchanged",
            "error": None,
            "detail": "",
        },
    ],
    "summary": {"issue": 1, "push": 1, "failed": 1, "unchanged": 1},
    "seconds": 1.25,
    "ok": False,
}
CERTIFICATES = [
    {
        "name": "api",
        "state": "active",
        "version": 1,
        "serial": "ab",
        "not_after": "2031-05-04T10:00:00Z",
        "days_left": 89.9,
        "destinations_in_sync": 1,
        "destinations": 1,
    }
]


def test_workflow_command_escaping_follows_the_runner_rules():
    assert github.escape_data("100%\r\nnext") == "100%25%0D%0Anext"
    assert github.escape_property("a: b, c%\n") == "a%3A b%2C c%25%0A"
    assert github.workflow_command("error", "x:y,z", title="t: 1, 2") == "::error title=t%3A 1%2C 2::x:y,z"
    assert github.workflow_command("warning", "plain") == "::warning::plain"


def test_one_annotation_per_failure_on_one_line():
    [line] = github.annotation_lines(REPORT)
    assert line.startswith("::error title=certsync push db failed::push db -> aws/db|tls: ")
    assert "100%25 <foreign>%0Asecond line" in line and "\n" not in line
    plan = {
        "actions": [
            {
                "action": "error",
                "certificate": "api",
                "destination": "gcp",
                "remote_name": "api",
                "reason": "cannot list: 403",
            }
        ],
        "changes": 0,
        "errors": 1,
    }
    assert github.annotation_lines(plan) == ["::error title=certsync cannot plan api::api -> gcp/api: cannot list: 403"]
    assert github.annotation_lines({"certificates": [], "cas": [], "warnings": ["CA 'x' expires"]}) == [
        "::warning title=certsync::CA 'x' expires"
    ]


def test_a_run_stopped_early_is_an_error_too():
    stopped = {
        "results": [
            {
                "action": "push",
                "certificate": "api",
                "destination": "aws",
                "remote_name": "api",
                "reason": "",
                "status": "skipped",
                "error": "max duration reached",
                "detail": "",
            }
        ],
        "summary": {"skipped": 1},
        "seconds": 60.0,
        "ok": False,
    }
    assert github.annotation_lines(stopped) == [
        "::error title=certsync run incomplete::1 action(s) not done: max duration reached"
    ]
    assert github.outputs(stopped) == {"changes": "0", "failed": "0", "ok": "false"}
    assert github.markdown("apply", stopped).startswith("### ❌ certsync apply: 1 skipped\n")


def test_outputs_count_changes_made_or_planned():
    assert github.outputs(REPORT) == {"changes": "2", "failed": "1", "ok": "false"}
    assert github.outputs({"actions": [], "changes": 3, "errors": 0}) == {"changes": "3", "failed": "0", "ok": "true"}


def test_report_markdown_lists_outcomes_with_expiry_and_escapes_cells():
    text = github.markdown("apply", REPORT, CERTIFICATES)
    assert text.startswith("### ❌ certsync apply: 1 issued, 1 pushed, 1 failed, 1 unchanged\n")
    assert text.endswith("\n\n")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[1] == "| ✅ | api | issued | — | — | 2031-05-04 (89.9 days) | version 1, serial ab |"
    assert rows[2] == "| ✅ | api | pushed | aws | api | 2031-05-04 (89.9 days) | v-1 |"
    assert rows[3] == (
        "| ❌ | db | push failed | aws | db\\|tls | — | secret 'db' exists and is not managed by "
        "certsync: 100% &lt;foreign&gt; second line |"
    )
    assert len(rows) == 4  # the unchanged one is counted, not listed
    assert "1 destination(s) already up to date." in text


def test_plan_and_list_markdown():
    plan = {
        "actions": [
            {
                "action": "renew",
                "certificate": "api",
                "destination": None,
                "remote_name": None,
                "reason": "expires in 9.0 days",
            },
            {"action": "unchanged", "certificate": "web", "destination": "aws", "remote_name": "web", "reason": ""},
        ],
        "changes": 1,
        "errors": 0,
    }
    text = github.markdown("plan", plan, CERTIFICATES)
    assert text.startswith("### 📋 certsync plan: 1 change(s)\n")
    assert "| renew | api | — | — | 2031-05-04 (89.9 days) | expires in 9.0 days |" in text
    listing = {
        "certificates": CERTIFICATES,
        "cas": [{"name": "root", "subject": "CN=Root", "not_after": "2035-01-01T00:00:00Z", "days_left": 3000.0}],
        "warnings": ["CA 'root' expires soon"],
    }
    text = github.markdown("list", listing)
    assert "| api | active | 1 | ab | 2031-05-04 (89.9 days) | 1/1 |" in text
    assert "| root | CN=Root | 2035-01-01 (3000 days) |" in text
    assert "> **Warning:** CA 'root' expires soon" in text
    with pytest.raises(ValueError):
        github.markdown("init", {"cas": []})


def run(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "sync", *args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.fixture
def github_env(workdir):
    summary, outputs = workdir / "summary.md", workdir / "outputs.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CERTSYNC_"))}
    env.update(GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary), GITHUB_OUTPUT=str(outputs))
    return env, summary, outputs


def test_cli_github_keeps_json_stdout_one_document(workdir, github_env):
    env, summary, outputs = github_env
    assert run("init", cwd=workdir, env=env).returncode == 0
    result = run("--github", "--output", "json", "apply", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"] == {"issue": 1}  # stdout parses as one document
    listing = json.loads(run("--output", "json", "list", cwd=workdir, env=env).stdout)["certificates"]
    text = summary.read_text()
    assert text.startswith("### ✅ certsync apply: 1 issued\n")
    assert f"| ✅ | api | issued | — | — | {listing[0]['not_after'][:10]} (" in text
    assert outputs.read_text() == "changes=1\nfailed=0\nok=true\n"


def test_cli_github_is_off_unless_asked(workdir, github_env):
    env, summary, outputs = github_env
    run("init", cwd=workdir, env=env)
    assert run("plan", cwd=workdir, env=env).returncode == 0
    assert not summary.exists() and not outputs.exists()
    assert run("plan", cwd=workdir, env={**env, "CERTSYNC_GITHUB": "true"}).returncode == 0
    assert summary.read_text().startswith("### 📋 certsync plan: 1 change(s)")


def test_cli_github_error_before_any_document(workdir, github_env):
    env, summary, _ = github_env
    result = run("--github", "--config", "missing.toml", "--output", "json", "plan", cwd=workdir, env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert "::error title=certsync plan failed::missing.toml: config file not found" in result.stderr
    assert summary.read_text().startswith("### ❌ certsync plan failed\n")
