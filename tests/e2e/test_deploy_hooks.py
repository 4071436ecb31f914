"""Deploy hooks, as a user runs them: a real hook script (Python, writing its environment and stdin
to a file) and a real local HTTP server receiving the webhook, after pushes to AWS Secrets Manager
on LocalStack. The facts arrive; no key material does, anywhere; a failing hook is reported, the
push stays and is not redone, and the hook runs again on the next run until it succeeds."""

import base64
import json
import os
import subprocess
import sys
import textwrap

from cryptography.hazmat.primitives import serialization

from tests.support.webhook import TOKEN, webhook_server

HOOK = textwrap.dedent("""
    import json, os, sys, time
    out = sys.argv[1]
    n = len([f for f in os.listdir(out) if f.startswith("call-")])
    with open(os.path.join(out, f"call-{n}.json"), "w") as f:
        json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "stdin": sys.stdin.read()}, f)
    if os.path.exists(os.path.join(out, "sleep")):
        time.sleep(60)
    if os.path.exists(os.path.join(out, "fail")):
        print("reload failed: nginx is down")
        sys.exit(3)
""")
AUTH = "Bearer hook-auth-value-not-for-logs"


def setup(project, tmp_path, aws_proxy, name_prefix, webhook_url, extra=""):
    out = tmp_path / "calls"
    out.mkdir()
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    project.env["HOOK_AUTH"] = AUTH
    project.env["CERTSYNC_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()  # must not reach the hook
    project.write(f"""
        [destination.aws]
        provider = "aws"
        region = "us-east-1"
        endpoint_url = "{aws_proxy.url}"
        deploy_hook = ["{sys.executable}", "{script}", "{out}", "--fast"]
        deploy_webhook = "{webhook_url}"
        deploy_webhook_auth_env = "HOOK_AUTH"
        {extra}

        [certificate.{name_prefix}]
        profile = "tls-server"
        common_name = "api.example.internal"
        dns_names = ["api.example.internal", "www.example.internal"]
        destinations = ["aws"]
        """)
    project.run("init")
    return out


def calls(out):
    return [json.loads((out / f"call-{i}.json").read_text()) for i in range(len(list(out.glob("call-*.json"))))]


def key_material(secretsmanager, name):
    """Every form the pushed key could leak in: PEM, DER base64, and the whole payload."""
    payload = secretsmanager.get_secret_value(SecretId=name)["SecretString"]
    key = serialization.load_pem_private_key(json.loads(payload)["private_key"].encode(), None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    b64 = base64.b64encode(der).decode()
    scalar = format(key.private_numbers().private_value, "x")  # the EC private value itself
    return ["PRIVATE KEY", b64, b64[len(b64) // 2 - 20 : len(b64) // 2 + 20], b64[-40:], scalar, payload]


def test_hooks_get_the_facts_never_the_key_and_run_on_push_and_renew_only(
    project, tmp_path, aws_proxy, secretsmanager, name_prefix
):
    with webhook_server() as hook:
        out = setup(project, tmp_path, aws_proxy, name_prefix, hook.url)
        first = project.run("--output", "json", "apply")
        report = json.loads(first.stdout)
        assert report["ok"] and report["summary"] == {"issue": 1, "push": 1}
        assert [(h["hook"], h["status"], h["attempt"]) for h in report["hooks"]] == [
            ("command", "ok", 1),
            ("webhook", "ok", 1),
        ]
        assert report["destinations"]["aws"] == {"created": 1, "hook ok": 2}

        [call] = calls(out)
        env, facts = call["env"], json.loads(call["stdin"])
        assert call["argv"] == [str(out), "--fast"]
        pushed = json.loads(secretsmanager.get_secret_value(SecretId=name_prefix)["SecretString"])
        assert env["CERTSYNC_CERT_NAME"] == name_prefix
        assert env["CERTSYNC_VERSION"] == "1" and env["CERTSYNC_SERIAL"] == pushed["serial"]
        assert env["CERTSYNC_FINGERPRINT_SHA256"] == pushed["fingerprint_sha256"]
        assert env["CERTSYNC_NOT_AFTER"] == pushed["not_after"]
        assert env["CERTSYNC_SUBJECT"] == "CN=api.example.internal"
        assert env["CERTSYNC_DOMAINS"] == "api.example.internal www.example.internal"
        assert env["CERTSYNC_SANS"] == "DNS:api.example.internal DNS:www.example.internal"
        assert (env["CERTSYNC_DESTINATION_NAME"], env["CERTSYNC_PROVIDER"], env["CERTSYNC_SECRET_NAME"]) == (
            "aws",
            "aws",
            name_prefix,
        )
        assert env["CERTSYNC_LOCATION"] == f"aws:secretsmanager:us-east-1:{name_prefix}"
        assert env["CERTSYNC_ACTION"] == "created" and env["CERTSYNC_ATTEMPT"] == "1"
        assert env["CERTSYNC_REMOTE_VERSION"]
        assert facts["sans"] == ["DNS:api.example.internal", "DNS:www.example.internal"]
        assert facts["serial"] == pushed["serial"] and facts["version"] == 1
        # secrets of certsync's own stay out of the hook's environment
        assert "CERTSYNC_MASTER_KEY" not in env and "HOOK_AUTH" not in env
        # and a hook can run certsync itself: no fact reads as a config override (CERTSYNC_DESTINATION...)
        inner = subprocess.run(
            [sys.executable, "-m", "sync", "--output", "json", "list"],
            env=env,
            cwd=project.path,
            capture_output=True,
            text=True,
        )
        assert inner.returncode == 0 and name_prefix in inner.stdout, inner.stderr

        [request] = hook.received
        body = request["body"]
        assert request["authorization"] == AUTH
        assert body["event"] == "deployed" and body["certificate"] == name_prefix
        assert {k: body[k] for k in facts} == facts

        unchanged = project.json("apply")  # nothing pushed: no hook
        assert unchanged["summary"] == {"unchanged": 1} and unchanged["hooks"] == []
        assert len(calls(out)) == 1 and len(hook.received) == 1

        renewed = project.json("renew", name_prefix)
        assert [h["status"] for h in renewed["hooks"]] == ["ok", "ok"]
        second = calls(out)[1]["env"]
        assert second["CERTSYNC_VERSION"] == "2" and second["CERTSYNC_ACTION"] == "updated"
        assert second["CERTSYNC_SERIAL"] != env["CERTSYNC_SERIAL"] and len(hook.received) == 2

        forbidden = key_material(secretsmanager, name_prefix) + [project.env["CERTSYNC_MASTER_KEY"], AUTH]
        seen = [(out / name).read_text() for name in os.listdir(out)] + [
            json.dumps(hook.bodies),
            first.stdout,
            first.stderr,
        ]
        for text in seen:
            for secret in forbidden:
                assert secret not in text


def test_a_failing_hook_is_reported_keeps_the_push_and_runs_again_until_it_succeeds(
    project, tmp_path, aws_proxy, secretsmanager, name_prefix
):
    with webhook_server() as hook:
        hook.statuses.extend([500, 500])  # the webhook fails (and its one retry)
        out = setup(project, tmp_path, aws_proxy, name_prefix, hook.url)
        (out / "fail").touch()
        result = project.run("--output", "json", "apply", expect=1)
        report = json.loads(result.stdout)
        assert report["ok"] is False and report["summary"] == {"issue": 1, "push": 1}  # the push succeeded
        assert [r["status"] for r in report["results"]] == ["done", "done"]
        hooks = {h["hook"]: h for h in report["hooks"]}
        assert hooks["command"]["status"] == "failed"
        assert hooks["command"]["error"] == "exit 3: reload failed: nginx is down"
        assert hooks["webhook"]["error"] == "deploy_webhook: HTTP 500 after 2 attempt(s)"
        assert report["destinations"]["aws"] == {"created": 1, "hook failed": 2}
        assert "deploy hook command" in result.stderr and "the push stands" in result.stderr
        assert TOKEN not in result.stdout + result.stderr
        assert secretsmanager.get_secret_value(SecretId=name_prefix)["SecretString"]

        plan = project.json("plan")  # the push is recorded: nothing to push again
        assert [a["action"] for a in plan["actions"]] == ["unchanged"]

        text = project.run("apply", expect=1)  # still failing: reported again, no push
        assert "unchanged" in text.stdout and "attempt 2" in text.stderr
        assert len(calls(out)) == 2 and len(hook.received) == 3  # the webhook succeeded this time

        (out / "fail").unlink()
        fixed = project.json("apply")
        assert fixed["summary"] == {"unchanged": 1}
        assert [(h["hook"], h["status"], h["attempt"]) for h in fixed["hooks"]] == [("command", "ok", 3)]
        assert calls(out)[-1]["env"]["CERTSYNC_ATTEMPT"] == "3" and len(hook.received) == 3

        assert project.json("apply")["hooks"] == []  # done: not run again
        assert len(calls(out)) == 3


def test_a_hook_that_hangs_is_killed_at_its_timeout(project, tmp_path, aws_proxy, name_prefix):
    with webhook_server() as hook:
        out = setup(project, tmp_path, aws_proxy, name_prefix, hook.url, extra='deploy_hook_timeout = "2s"')
        (out / "sleep").touch()
        report = project.json("apply", expect=1)
    assert report["summary"] == {"issue": 1, "push": 1}
    hooks = {h["hook"]: h for h in report["hooks"]}
    assert hooks["command"]["error"] == "timed out after 2s (killed)" and hooks["webhook"]["status"] == "ok"


WAITING_HOOK = textwrap.dedent("""
    import os, sys, time
    import boto3
    endpoint, names = sys.argv[1], sys.argv[2:]
    client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1")
    for _ in range(600):          # at most a minute: the other pushes must land while this hook runs
        found = {s["Name"] for page in client.get_paginator("list_secrets").paginate() for s in page["SecretList"]}
        if set(names) <= found:
            sys.exit(0)
        time.sleep(0.1)
    print("the other pushes did not land while the hook ran")
    sys.exit(1)
""")


def test_a_running_hook_does_not_hold_up_the_other_pushes(project, tmp_path, aws_proxy, name_prefix):
    """Each hook waits until every certificate's secret exists: they can all succeed only if the
    pushes go on while hooks run (a hook in the write path would hold the later pushes up)."""
    names = [f"{name_prefix}-{i}" for i in range(3)]
    script = tmp_path / "wait.py"
    script.write_text(WAITING_HOOK)
    certificates = "".join(
        f"""
        [certificate.{n}]
        profile = "tls-server"
        common_name = "{n}.example.internal"
        destinations = ["aws"]
        """
        for n in names
    )
    argv = json.dumps([sys.executable, str(script), aws_proxy.url, *names])
    project.write(
        f"""
        [destination.aws]
        provider = "aws"
        region = "us-east-1"
        endpoint_url = "{aws_proxy.url}"
        concurrency = 1
        deploy_hook = {argv}
        deploy_hook_timeout = "90s"
        """
        + certificates
    )
    project.run("init")
    report = project.json("apply")
    assert report["summary"] == {"issue": 3, "push": 3}
    assert [h["status"] for h in report["hooks"]] == ["ok"] * 3
