"""The CLI as a user runs it, offline (no destinations): exit codes, help, JSON output."""

import json
import subprocess
import sys

import pytest
from cryptography import x509

from sync.store import migrations
from sync.cli import cli


def run(*args, cwd, check=True):
    result = subprocess.run([sys.executable, "-m", "sync", *args], capture_output=True, text=True, cwd=cwd)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help(name):
    assert cli.commands[name].help, f"command {name} has no help text"


def test_init_plan_apply_list_export(workdir):
    first = run("init", cwd=workdir).stdout
    assert "created  CA root" in first and f"created  store (schema {migrations.head()})" in first
    assert "store" not in run("init", cwd=workdir).stdout  # nothing new the second time
    plan = run("--output", "json", "plan", cwd=workdir)
    assert json.loads(plan.stdout)["actions"][0]["action"] == "issue"
    assert run("plan", "--detailed-exitcode", cwd=workdir, check=False).returncode == 2
    report = json.loads(run("--output", "json", "apply", cwd=workdir).stdout)
    assert report["ok"] and report["summary"] == {"issue": 1}
    assert run("plan", "--detailed-exitcode", cwd=workdir, check=False).returncode == 0
    listing = json.loads(run("--output", "json", "list", cwd=workdir).stdout)["certificates"]
    assert [(c["name"], c["state"], c["version"]) for c in listing] == [("api", "active", 1)]
    assert 89 < listing[0]["days_left"] <= 90
    pem = run("export", "api", "--format", "pem", cwd=workdir).stdout
    certs = x509.load_pem_x509_certificates(pem.encode())
    assert len(certs) == 2  # leaf + intermediate, never the root
    assert "BEGIN PRIVATE KEY" in pem
    run("export", "api", "--format", "pkcs12", "--out", "api.pfx", cwd=workdir)
    assert (workdir / "api.pfx").stat().st_mode & 0o777 == 0o600


def test_quiet_apply_prints_nothing(workdir):
    run("init", cwd=workdir)
    result = run("-q", "apply", cwd=workdir)
    assert result.stdout == "" and result.stderr == ""


def test_errors_are_one_line_with_exit_codes(workdir):
    result = run("list", cwd=workdir, check=False)
    assert result.returncode == 1
    assert result.stderr == f"error: no store at {workdir / 'certsync.db'}: run `certsync init` first\n"
    result = run("--config", "missing.toml", "plan", cwd=workdir, check=False)
    assert result.returncode == 2 and result.stderr.startswith("error: missing.toml: config file not found")
    run("init", cwd=workdir)
    result = run("export", "nope", cwd=workdir, check=False)
    assert result.returncode == 2 and result.stderr == "error: unknown certificate 'nope' (defined: api)\n"
    result = run("plan", "--bogus", cwd=workdir, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_debug_shows_traceback(workdir):
    result = run("--debug", "list", cwd=workdir, check=False)
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_policy_violation_fails_that_certificate_only(workdir):
    with open(workdir / "sync.toml", "a") as f:
        f.write('\n[certificate.evil]\nprofile = "tls-server"\ncommon_name = "evil.example.com"\n')
    run("init", cwd=workdir)
    result = run("apply", cwd=workdir, check=False)
    assert result.returncode == 1
    assert "issue      api" in result.stdout
    assert result.stderr == (
        "error: issue evil -> evil: profile 'tls-server': DNS name 'evil.example.com' "
        "is not within allowed_domains (*.example.internal, example.internal)\n"
    )


def _public_key(workdir):
    pem = run("export", "api", "--format", "pem", cwd=workdir).stdout
    return x509.load_pem_x509_certificates(pem.encode())[0].public_key()


def test_renew_rotates_or_reuses_the_key(workdir):
    run("init", cwd=workdir)
    run("apply", cwd=workdir)
    first = _public_key(workdir)
    run("renew", "api", "--reuse-key", cwd=workdir)
    assert _public_key(workdir) == first
    run("renew", "api", cwd=workdir)  # the profile says rotate (the default)
    assert _public_key(workdir) != first
    listing = json.loads(run("--output", "json", "list", cwd=workdir).stdout)["certificates"]
    assert [(c["name"], c["version"], c["state"]) for c in listing] == [("api", 3, "active")]


def test_retire_marks_retired_and_apply_does_not_reissue(workdir):
    run("init", cwd=workdir)
    run("apply", cwd=workdir)
    run("retire", "api", cwd=workdir)
    listing = json.loads(run("--output", "json", "list", cwd=workdir).stdout)["certificates"]
    assert listing[0]["state"] == "retired"
    plan = json.loads(run("--output", "json", "plan", cwd=workdir).stdout)
    assert plan["changes"] == 0 and plan["actions"][0]["action"] == "skip"
    run("push", "api", cwd=workdir)  # enrolls it again on purpose
    listing = json.loads(run("--output", "json", "list", cwd=workdir).stdout)["certificates"]
    assert [(c["version"], c["state"]) for c in listing] == [(2, "active")]


def test_list_warns_when_a_ca_expires_before_what_it_signs(workdir):
    text = (workdir / "sync.toml").read_text().replace('validity = "1825d"', 'validity = "60d"')
    (workdir / "sync.toml").write_text(text)
    run("init", cwd=workdir)
    run("apply", cwd=workdir)
    result = run("list", cwd=workdir)
    assert "warning: CA 'issuing' expires on" in result.stderr
    assert "before certificates issued now from profile 'tls-server' would (90d)" in result.stderr
    document = json.loads(run("--output", "json", "list", cwd=workdir).stdout)
    assert [c["name"] for c in document["cas"]] == ["root", "issuing"]
    assert len(document["warnings"]) == 1
    assert document["certificates"][0]["days_left"] <= 60  # the leaf was cut to the CA's end


def test_new_issuing_ca_moves_the_chain(workdir):
    run("init", cwd=workdir)
    run("apply", cwd=workdir)
    text = (
        (workdir / "sync.toml")
        .read_text()
        .replace('[profile.tls-server]\nca = "issuing"', '[profile.tls-server]\nca = "issuing2"')
    )
    text += '\n[ca.issuing2]\nparent = "root"\nsubject = "CN=Test Issuing CA 2,O=certsync tests"\nkey = "ec-p256"\n'
    (workdir / "sync.toml").write_text(text)
    # CA not created yet: plan shows the reissue, apply says to run init
    assert "issue      api (profile now issues from CA 'issuing2')" in run("plan", cwd=workdir).stdout
    failed = run("apply", cwd=workdir, check=False)
    assert failed.returncode == 1
    assert failed.stderr == "error: issue api -> api: CA 'issuing2' is not in the store: run `certsync init`\n"
    run("init", cwd=workdir)
    plan = json.loads(run("--output", "json", "plan", cwd=workdir).stdout)
    assert plan["actions"][0]["reason"] == "profile now issues from CA 'issuing2'"
    run("apply", cwd=workdir)
    pem = run("export", "api", "--format", "pem", cwd=workdir).stdout
    chain = x509.load_pem_x509_certificates(pem.encode())
    assert chain[1].subject.rfc4514_string() == "CN=Test Issuing CA 2,O=certsync tests"
    assert chain[0].issuer == chain[1].subject


def test_global_options_after_the_subcommand(workdir):
    """Users of aws, gh and kubectl put flags after the command: the same run either way."""
    (workdir / "conf").mkdir()
    (workdir / "sync.toml").rename(workdir / "conf" / "x.toml")
    run("init", "--config", "conf/x.toml", cwd=workdir)
    quiet = run("apply", "-q", "--config", "conf/x.toml", cwd=workdir)
    assert quiet.stdout == "" and quiet.stderr == ""
    after = json.loads(run("list", "--output", "json", "--config", "conf/x.toml", cwd=workdir).stdout)
    before = json.loads(run("--output", "json", "--config", "conf/x.toml", "list", cwd=workdir).stdout)
    assert after == before and [c["name"] for c in after["certificates"]] == ["api"]
    plan = run("plan", "--config=conf/x.toml", "--output=json", "--detailed-exitcode", cwd=workdir)
    assert json.loads(plan.stdout)["changes"] == 0
    logs = run("list", "--config", "conf/x.toml", "--log-format", "json", "--output", "json", cwd=workdir)
    assert json.loads(logs.stdout)["certificates"]
    # --debug after the command shows the traceback of a failure, and the one-line error
    failed = run("export", "nope", "--config", "conf/x.toml", "--debug", cwd=workdir, check=False)
    assert failed.returncode == 2 and "Traceback" in failed.stderr
    assert failed.stderr.rstrip().splitlines()[-1].startswith("error: unknown certificate 'nope'")
    plain = run("export", "nope", "--config", "conf/x.toml", cwd=workdir, check=False)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr


def test_plan_list_metrics_and_a_current_crl_need_no_master_key(workdir):
    """A pull-request plan job runs without the key: only commands that open a private key need it."""
    run("init", cwd=workdir)
    run("apply", cwd=workdir)
    run("crl", "issuing", "--pem", cwd=workdir)  # publishes the first CRL (needs the key)
    (workdir / "certsync.key").rename(workdir / "elsewhere.key")
    assert json.loads(run("--output", "json", "plan", cwd=workdir).stdout)["changes"] == 0
    assert json.loads(run("--output", "json", "list", cwd=workdir).stdout)["certificates"][0]["name"] == "api"
    assert "certsync_certificate_not_after_seconds" in run("metrics", cwd=workdir).stdout
    assert "BEGIN X509 CRL" in run("crl", "issuing", "--pem", cwd=workdir).stdout
    export = run("export", "api", cwd=workdir, check=False)  # a private key: the key is needed
    assert export.returncode == 1 and export.stderr.startswith("error: no master key") and "BEGIN" not in export.stdout
