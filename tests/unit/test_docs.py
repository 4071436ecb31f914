"""The generated configuration reference and JSON Schema match the models (they never drift),
the schema accepts the example config and refuses bad ones, and the scheduling page's manifests
are well-formed."""

import importlib.util
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest

from providers.registry import destination_models
from sync import config

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_docs = _generator()


@pytest.mark.parametrize("path", [gen_docs.MARKDOWN, gen_docs.SCHEMA], ids=lambda p: p.name)
def test_committed_docs_are_up_to_date(path):
    assert path.read_text(encoding="utf-8") == gen_docs.outputs()[path], (
        f"{path.relative_to(ROOT)} is out of date: run .venv/bin/python scripts/gen_docs.py"
    )


def test_check_mode(capsys):
    assert gen_docs.main(["--check"]) == 0


def test_every_key_is_documented():
    text = gen_docs.MARKDOWN.read_text()
    models = [
        config.StoreConfig,
        config.CAConfig,
        config.ProfileConfig,
        *destination_models(),
        config.CertificateConfig,
        config.DestinationRef,
        config.NotifyConfig,
        config.Config,
    ]
    for model in models:
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            assert field.description, f"{model.__name__}.{name} has no Field(description=...)"
            if model is not config.Config:
                assert f"| `{name}` |" in text, f"{model.__name__}.{name} missing from docs/configuration.md"
    for section in ("[store]", "[ca.NAME]", "[profile.NAME]", "[destination.NAME]", "[certificate.NAME]", "[notify]"):
        assert f"## `{section}`" in text
    assert '| `expiring_within` | duration | "30d" |' in text  # durations as the config spells them


def test_a_field_without_description_fails_the_generator(monkeypatch):
    field = config.NotifyConfig.model_fields["format"]
    monkeypatch.setattr(field, "description", None)
    with pytest.raises(gen_docs.MissingDescription, match=r"notify.format: add Field\(description"):
        gen_docs.markdown()


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(json.loads(gen_docs.SCHEMA.read_text()))


def test_schema_accepts_the_example_and_the_test_config(validator):
    from tests.unit.conftest import BASE_CONFIG

    for document in (tomllib.loads((ROOT / "sync.example.toml").read_text()), tomllib.loads(BASE_CONFIG)):
        assert list(validator.iter_errors(document)) == []
    notify = {"notify": {"webhook_url": "https://hooks.example/x", "format": "slack", "expiring_within": "14d"}}
    assert list(validator.iter_errors(notify)) == []


@pytest.mark.parametrize(
    "document",
    [
        {"notify": {"format": "xml"}},
        {"notify": {"expiring_within": "P30D"}},  # ISO 8601 is not how the config spells it
        {"profile": {"p": {"ca": "x", "renew_before": "thirty days"}}},
        {"store": {"bogus": 1}},  # unknown keys are errors
        {"destination": {"d": {"provider": "aws", "vault_url": "https://v"}}},  # an Azure key on AWS
        {"ca": {"root": {"key": "ec-p256"}}},  # subject is required
    ],
    ids=["format", "iso-duration", "renew-before", "unknown-key", "wrong-provider-key", "required"],
)
def test_schema_refuses_bad_configs(validator, document):
    assert list(validator.iter_errors(document))


def test_schema_and_loader_agree_on_durations(validator):
    for value in ("90d", "12h", "30m", "45s", "0d", "7x", "P30D"):
        document = {"notify": {"expiring_within": value}}
        try:
            config.from_dict(document)
            loads = True
        except config.ConfigError:
            loads = False
        assert loads == (not list(validator.iter_errors(document))), value


def test_scheduling_page():
    text = (ROOT / "docs" / "scheduling.md").read_text()
    blocks = dict.fromkeys(["cron", "ini", "yaml", "sh"], "")
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, re.S):
        blocks[lang] = blocks.get(lang, "") + body
    assert "apply --max-duration" in blocks["cron"] and "--log-format json" in blocks["cron"]
    assert "[Service]" in blocks["ini"] and "Type=oneshot" in blocks["ini"]
    assert "[Timer]" in blocks["ini"] and "WantedBy=timers.target" in blocks["ini"]
    yaml = pytest.importorskip("yaml")
    manifests = [m for m in yaml.safe_load_all(blocks["yaml"]) if m]
    cronjob = next(m for m in manifests if m["kind"] == "CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    secret_env = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert {"CERTSYNC_MASTER_KEY", "CERTSYNC_NOTIFY__WEBHOOK_URL"} <= secret_env
    for code in ("| 0 |", "| 1 |", "| 2 |"):
        assert code in text
    assert "--detailed-exitcode" in text


def test_readme_links_the_docs():
    readme = (ROOT / "README.md").read_text()
    for target in ("docs/configuration.md", "docs/certsync.schema.json", "docs/scheduling.md"):
        assert f"]({target})" in readme and (ROOT / target).exists()
