"""providers/registry.py: one descriptor per cloud, and everything else follows from it."""

import subprocess
import sys

import pytest

from providers import base
from providers.registry import MODULES, descriptor, descriptors, destination_models
from sync import config
from sync.reconcile import pacing
from sync.errors import NameError_


def test_loading_every_provider_and_the_config_imports_no_cloud_sdk():
    code = (
        "import sys, providers.registry as r, sync.config; r.descriptors(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'google', 'azure'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_descriptor_per_module_and_the_config_union_follows():
    assert list(descriptors()) == ["aws", "gcp", "azure", "aws-acm"] and len(MODULES) == 4
    for kind, d in descriptors().items():
        assert d.config.model_fields["provider"].annotation.__args__ == (kind,)
        assert d.factory.__module__ == d.adapter.__module__ == d.config.__module__
    destination = config.Config.model_fields["destination"].annotation.__args__[1]
    assert destination.__args__[0].__args__ == destination_models()


def test_descriptors_drive_names_and_quotas():
    with pytest.raises(config.ConfigError, match="name 'under_score' is invalid for azure destination 'z'"):
        config.from_dict(
            {
                "destination": {"z": {"provider": "azure", "vault_url": "https://v"}},
                "ca": {"root": {"subject": "CN=Root"}},
                "profile": {"p": {"ca": "root"}},
                "certificate": {
                    "api": {
                        "profile": "p",
                        "common_name": "api.example",
                        "destinations": [{"to": "z", "name": "under_score"}],
                    }
                },
            }
        )
    purging = config.from_dict(
        {"destination": {"z": {"provider": "azure", "vault_url": "https://v", "purge_on_delete": True}}}
    ).destination["z"]
    assert pacing.quota_of(purging).calls_per_delete == 5.0  # GET, DELETE, a poll; GET and PURGE


def test_the_names_other_code_imported_from_providers_base_still_work():
    assert base.NAME_RULES["azure"] is descriptor("azure").name_rule
    assert base.load_provider_factory("gcp") is descriptor("gcp").factory
    with pytest.raises(NameError_, match="invalid aws secret name"):
        base.validate_name("aws", "has space")
