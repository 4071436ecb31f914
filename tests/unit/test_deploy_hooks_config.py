"""Deploy hook keys: bad values are one line naming the destination's key, exit 2, nothing written."""

import subprocess
import sys

import pytest

from sync import config
from sync.errors import ConfigError

from .conftest import write_config

AWS = '[destination.a]\nprovider = "aws"\nregion = "eu-west-1"\n'


@pytest.mark.parametrize(
    "keys, key, rule",
    [
        ('deploy_hook = "systemctl reload nginx"', "destination.a.deploy_hook", "argv list"),
        ("deploy_hook = []", "destination.a.deploy_hook", "at least 1 item"),
        ('deploy_hook = ["", "x"]', "destination.a.deploy_hook", "must not be empty"),
        ('deploy_webhook = "ftp://x.example/hook"', "destination.a.deploy_webhook", "http:// or https://"),
        (
            'deploy_webhook = "https://x.example/hook"\ndeploy_webhook_auth_env = "Bearer abc"',
            "destination.a.deploy_webhook_auth_env",
            "NAME of an environment variable",
        ),
        ('deploy_webhook_auth_env = "HOOK_AUTH"', "destination.a", "needs deploy_webhook"),
        (
            'deploy_webhook = "http://hooks.example/x"\ndeploy_webhook_auth_env = "HOOK_AUTH"',
            "destination.a",
            "plaintext",
        ),
        ('deploy_hook_timeout = "soon"', "destination.a.deploy_hook_timeout", "duration"),
        ('deploy_hooks = ["/bin/true"]', "destination.a.deploy_hooks", "unknown key"),
    ],
)
def test_bad_hook_keys_name_the_key(tmp_path, keys, key, rule):
    path = write_config(tmp_path / "bad.toml", AWS + keys + "\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert "\n" not in message and f": {key}: " in message and rule in message


def test_hook_keys_load(tmp_path):
    path = write_config(
        tmp_path / "ok.toml",
        AWS + 'deploy_hook = ["/usr/local/bin/reload", "--fast"]\n'
        'deploy_webhook = "http://127.0.0.1:9/hook"\ndeploy_webhook_auth_env = "HOOK_AUTH"\n'
        'deploy_hook_timeout = "30s"\n',
    )
    dest = config.load(path).destination["a"]
    assert dest.deploy_hook == ["/usr/local/bin/reload", "--fast"] and dest.has_hooks
    assert dest.deploy_hook_timeout.total_seconds() == 30


def test_cli_shell_string_exits_2_with_one_line(tmp_path):
    write_config(tmp_path / "sync.toml", AWS + 'deploy_hook = "reload --fast"\n')
    result = subprocess.run([sys.executable, "-m", "sync", "init"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "destination.a.deploy_hook: must be an argv list" in result.stderr
    assert not (tmp_path / "certsync.db").exists()
