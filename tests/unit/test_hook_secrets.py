"""Secrets the config names by environment variable never reach a deploy hook, and a webhook's
Authorization header never follows a redirect (security review)."""

import pytest

from sync import config
from sync.reconcile import hooks

from .conftest import write_config

AWS = '[destination.a]\nprovider = "aws"\nregion = "eu-west-1"\ndeploy_hook = ["/bin/true"]\n'


def test_discovery_pfx_password_is_not_in_the_hook_environment(tmp_path, monkeypatch):
    var = f"HOOKSEC_DISC_PFX_{tmp_path.name.upper().replace('-', '_')}"
    monkeypatch.setenv(var, "disc-pfx-password")
    path = write_config(tmp_path / "c.toml", AWS + f'[discovery.files]\npkcs12_password_env = "{var}"\n')
    env = hooks.environment(config.load(path), {}, 1)
    assert var not in env and "disc-pfx-password" not in env.values()

