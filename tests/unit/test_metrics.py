"""`certsync metrics` (Prometheus text format, checked with prometheus_client's parser) and
`certsync list --expiring`."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, UTC
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from sync import config, metrics
from sync.app import App
from sync.clock import utcnow
from sync.cli import cli
from sync.inventory import DeploymentView, Facts, Target
from tests.support.memory import MemoryProvider
from tests.unit.conftest import write_config

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def run(*args, cwd, expect=0):
    result = subprocess.run([sys.executable, "-m", "sync", *args], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == expect, result.stderr
    return result


def invoke(*args, expect=0):
    """The CLI in-process (quicker than a subprocess)."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == expect, result.output
    return result


def samples(text: str) -> dict[str, list]:
    return {
        family.name: [(s.labels, s.value) for s in family.samples] for family in text_string_to_metric_families(text)
    }


def test_label_values_are_escaped_and_parse_back():
    nasty = 'a\\b"c\nd'
    gathered = Facts(
        inventory=SimpleNamespace(
            certificates=[
                SimpleNamespace(name="api", state="active", version=3, not_after=NOW),
                SimpleNamespace(name="old", state="retired", version=1, not_after=NOW),
            ],
            authorities=[{"name": "root", "not_after": "2040-01-01T00:00:00Z"}],
        ),
        deployments=[
            DeploymentView("api", "aws", nasty, 5, 3, 5, 3, NOW - timedelta(seconds=90)),
            DeploymentView("api", "gcp", "api", 4, 2, 5, 3, NOW - timedelta(days=2)),
        ],
        targets=[Target("api", "aws", nasty), Target("api", "azure", "api-tls")],
        now=NOW,
    )
    text = metrics.render(gathered)
    assert 'remote_name="a\\\\b\\"c\\nd"' in text
    assert "# TYPE certsync_certificate_not_after_seconds gauge" in text
    parsed = samples(text)
    assert parsed["certsync_certificate_not_after_seconds"] == [
        ({"certificate": "api", "version": "3"}, NOW.timestamp())
    ]  # retired: not exported
    assert parsed["certsync_ca_not_after_seconds"] == [({"ca": "root"}, datetime(2040, 1, 1, tzinfo=UTC).timestamp())]
    in_sync = {
        (labels["destination"], labels["remote_name"]): value
        for labels, value in parsed["certsync_destination_in_sync"]
    }
    assert in_sync == {("aws", nasty): 1, ("gcp", "api"): 0, ("azure", "api-tls"): 0}  # azure: never pushed
    last = {labels["destination"]: value for labels, value in parsed["certsync_destination_last_success_seconds"]}
    assert last == {"aws": NOW.timestamp() - 90, "gcp": (NOW - timedelta(days=2)).timestamp()}


def test_metrics_command_stdout_and_atomic_out(workdir):
    cfg = config.load("sync.toml")
    App(cfg).init()
    App(cfg).apply()
    parsed = samples(invoke("metrics").stdout)
    assert set(parsed) == {
        "certsync_certificate_not_after_seconds",
        "certsync_ca_not_after_seconds",
        "certsync_destination_last_success_seconds",
        "certsync_destination_in_sync",
    }
    [(labels, value)] = parsed["certsync_certificate_not_after_seconds"]
    assert labels == {"certificate": "api", "version": "1"}
    assert 89 * 86400 < value - utcnow().timestamp() <= 90 * 86400
    assert [labels["ca"] for labels, _ in parsed["certsync_ca_not_after_seconds"]] == ["issuing", "root"]

    out = workdir / "textfile" / "certsync.prom"
    out.parent.mkdir()
    out.write_text("old content\n")
    assert run("-q", "metrics", "--out", str(out), cwd=workdir).stdout == ""
    assert samples(out.read_text()) == parsed
    assert out.stat().st_mode & 0o777 == 0o644
    assert os.listdir(out.parent) == ["certsync.prom"]  # no temporary file left behind
    assert json.loads(invoke("--output", "json", "metrics").stdout)["metrics"].startswith("# HELP")


def test_write_atomic_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "m.prom"
    target.write_text("old\n")
    with pytest.raises(TypeError):
        metrics.write_atomic(target, object())  # not text: the write fails
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["m.prom"]


def test_in_sync_and_last_success_follow_the_pushes(workdir):
    base = (
        (workdir / "sync.toml")
        .read_text()
        .replace(
            'dns_names = ["api.example.internal", "www.example.internal"]',
            'dns_names = ["api.example.internal", "www.example.internal"]\n'
            'destinations = ["vault", { to = "vault", name = "api-copy" }]',
        )
    )
    write_config(workdir / "sync.toml", '\n[destination.vault]\nprovider = "aws"\nregion = "eu-west-1"\n', base=base)
    cfg = config.load("sync.toml")
    App(cfg).init()
    provider = MemoryProvider()
    t0 = utcnow()
    App(cfg, providers=lambda d: provider, now=t0).apply()
    first = samples(metrics.collect(App(cfg, now=t0)))
    assert [v for _, v in first["certsync_destination_in_sync"]] == [1, 1]
    pushed = [v for _, v in first["certsync_destination_last_success_seconds"]]
    assert all(abs(v - utcnow().timestamp()) < 60 for v in pushed)

    provider.fail = True  # renewal pushed nowhere: both copies stale
    App(cfg, providers=lambda d: provider, now=t0 + timedelta(days=65)).apply()
    later = samples(metrics.collect(App(cfg, now=t0 + timedelta(days=65))))
    assert [v for _, v in later["certsync_destination_in_sync"]] == [0, 0]
    assert [v for _, v in later["certsync_destination_last_success_seconds"]] == pushed
    assert later["certsync_certificate_not_after_seconds"][0][0]["version"] == "2"


def test_list_expiring(workdir):
    cfg = config.load("sync.toml")
    App(cfg).init()
    App(cfg).apply()

    def listed(*args):
        document = json.loads(invoke("--output", "json", "list", *args).stdout)
        return [c["name"] for c in document["certificates"]], [c["name"] for c in document["cas"]]

    assert listed() == (["api"], ["root", "issuing"])
    assert listed("--expiring", "91d") == (["api"], [])
    assert listed("--expiring", "30d") == ([], [])
    assert listed("--expiring", "1826d") == (["api"], ["issuing"])
    assert "api" in invoke("list", "--expiring", "91d").stdout
    assert "api" not in invoke("list", "--expiring", "30d").stdout
    assert "Invalid value for '--expiring'" in invoke("list", "--expiring", "soon", expect=2).output
