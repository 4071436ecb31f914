#!/usr/bin/env python3
"""Generate the configuration reference from the pydantic models in sync/config.py (destinations:
providers/<kind>.py, listed in providers/registry.py).

    .venv/bin/python scripts/gen_docs.py           write docs/configuration.md and docs/certsync.schema.json
    .venv/bin/python scripts/gen_docs.py --check   exit 1 when either file differs from what the models say

Every key of every section needs a `Field(description=...)` in its model; a missing one is an
error here (and so in tests/unit/test_docs.py), so the reference never lags behind the code.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sync import config  # noqa: E402

MARKDOWN = ROOT / "docs" / "configuration.md"
SCHEMA = ROOT / "docs" / "certsync.schema.json"


class MissingDescription(Exception):
    pass


# --- types and defaults, as a user writes them in TOML ----------------------------------------------


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007  built at run time
    return annotation, False


def type_text(annotation: Any) -> str:
    annotation, _ = _strip_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner = typing.get_args(annotation)[0]
        if inner is config.RenewBefore:
            return "duration or percentage"
        return type_text(inner)
    if origin is Literal:
        return " \\| ".join(json.dumps(v) for v in typing.get_args(annotation))
    if origin is list:
        return f"list of {type_text(typing.get_args(annotation)[0])}"
    if origin is dict:
        return f"tables of {type_text(typing.get_args(annotation)[1])}"
    if origin in (Union, types.UnionType):
        return " or ".join(type_text(a) for a in typing.get_args(annotation))
    if annotation is timedelta:
        return "duration"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def constraints_text(field: FieldInfo) -> str:
    words = []
    for item in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(item, getattr(annotated_types, attr.capitalize())):
                words.append(f"{sign} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MinLen):
            words.append(f"at least {item.min_length}")
    return f" ({', '.join(words)})" if words else ""


def toml_value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return json.dumps(config.format_duration(value))
    if isinstance(value, (str, int, float)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else "{ ... }"
    if isinstance(value, BaseModel):
        return "(table)"
    return str(value)


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return toml_value(field.default_factory())
    if field.default is PydanticUndefined:
        return "**required**"
    return toml_value(field.default)


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|").replace("\\\\|", "\\|")


def _table(model: type[BaseModel], where: str, fields: list[str] | None = None) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if fields is not None and name not in fields or field.exclude:
            continue
        if not field.description:
            raise MissingDescription(
                f"{where}.{name}: add Field(description=...) in {model.__module__} ({model.__name__})"
            )
        rows.append(
            f"| `{name}` | {_cell(type_text(field.annotation))}{constraints_text(field)} "
            f"| {_cell(default_text(field))} | {_cell(field.description)} |"
        )
    return rows


# --- the sections of Config ---------------------------------------------------------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    annotation, _ = _strip_optional(annotation)
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _models_in(a)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _discriminator(annotation: Any) -> str | None:
    """The key that picks the model of a union (Field(discriminator=...)): `provider` for destinations."""
    if typing.get_origin(annotation) is Annotated:
        for item in typing.get_args(annotation)[1:]:
            if isinstance(item, FieldInfo) and isinstance(item.discriminator, str):
                return item.discriminator
    return None


def _nested(model: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    """Tables that a key of `model` may hold (e.g. a certificate's destinations entries)."""
    found = []
    for name, field in model.model_fields.items():
        annotation, _ = _strip_optional(field.annotation)
        if typing.get_origin(annotation) is list:
            for m in _models_in(typing.get_args(annotation)[0]):
                found.append((name, m))
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.append((name, annotation))  # a table of its own (a CA's name_constraints)
    return found


def markdown() -> str:
    out = [
        "<!-- Generated by scripts/gen_docs.py from sync/config.py: edit the models' Field(description=...), "
        "then run `.venv/bin/python scripts/gen_docs.py`. -->",
        "# Configuration reference",
        "",
        "certsync reads one TOML file (`--config`, default `sync.toml`, env `CERTSYNC_CONFIG`). "
        "`sync.example.toml` is a complete, commented example.",
        "",
        "- Any key can be set from the environment: `CERTSYNC_` + the section path + the key, upper case, with "
        "`__` between levels, e.g. `CERTSYNC_STORE__URL`, `CERTSYNC_NOTIFY__WEBHOOK_URL`. The environment wins "
        "over the file.",
        "- Relative paths (the SQLite file, `store.key_file`, `ca_bundle`) are relative to the config file's folder.",
        "- Durations are written `90d`, `12h`, `30m` or `45s`.",
        "- Key types: `rsa-2048`, `rsa-3072`, `rsa-4096`, `ec-p256`, `ec-p384`, `ed25519`.",
        "- CA and certificate names (the `NAME` in `[ca.NAME]`, `[certificate.NAME]`) are 1-63 lowercase "
        "letters, digits or `-`, starting and ending with a letter or digit.",
        "- Unknown keys are errors. Every problem is reported as one line naming the file, the key and the rule "
        "(exit code 2), before anything is written.",
        "- Credentials for the clouds never go in this file: each cloud's default chain provides them.",
        "",
        "Editors: [`certsync.schema.json`](certsync.schema.json) is a JSON Schema of this file. With Taplo or "
        "the *Even Better TOML* extension, put `#:schema ./docs/certsync.schema.json` (path relative to the "
        "TOML file) on the first line of `sync.toml` for completion and checks as you type.",
        "",
    ]
    for key, field in config.Config.model_fields.items():
        if field.exclude:
            continue
        annotation, _ = _strip_optional(field.annotation)
        keyed = typing.get_origin(annotation) is dict
        header = f"[{key}.NAME]" if keyed else f"[{key}]"
        models = _models_in(typing.get_args(annotation)[1] if keyed else annotation)
        if not field.description:
            raise MissingDescription(f"{key}: add Field(description=...) to Config in sync/config.py")
        out += [f"## `{header}`", "", field.description, ""]
        if len(models) == 1:
            out += _table(models[0], key) + [""]
        else:  # a union of models (destinations): common keys, then each member's own
            common = [n for n in models[0].model_fields if all(n in m.model_fields for m in models)]
            tag = _discriminator(typing.get_args(annotation)[1] if keyed else annotation)
            shared = [n for n in common if n != tag]
            out += ["Keys of every kind:", ""] + _table(models[0], key, shared) + [""]
            for m in models:
                value = typing.get_args(m.model_fields[tag].annotation)[0] if tag else m.__name__
                own = [n for n in m.model_fields if n not in shared]
                out += [f'### `{tag} = "{value}"`', ""] + _table(m, f"{key}.{value}", own) + [""]
        for model in models:
            for name, nested in _nested(model):
                if any(line in (f"### `{name}` entries", f"### `{name}` table") for line in out):
                    continue
                if typing.get_origin(_strip_optional(model.model_fields[name].annotation)[0]) is list:
                    out += [
                        f"### `{name}` entries",
                        "",
                        f"Each entry of `{name}` is a string or a table with these keys:",
                        "",
                    ]
                    out += _table(nested, f"{key}.{name}[]") + [""]
                else:
                    out += [f"### `{name}` table", "", f"`{name}` is an inline table with these keys:", ""]
                    out += _table(nested, f"{key}.{name}") + [""]
    return "\n".join(out).rstrip("\n") + "\n"


# --- JSON Schema ---------------------------------------------------------------------------------------


class _ConfigSpelling(GenerateJsonSchema):
    """Defaults as the config writes them ("30d"), not as ISO 8601 ("P30D")."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return config.format_duration(dft)
        return super().encode_default(dft)


def schema() -> dict:
    document = config.Config.model_json_schema(schema_generator=_ConfigSpelling)
    document["properties"].pop("base_dir", None)  # set by the loader, not a key users write
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "certsync configuration (sync.toml)",
        "description": "Generated by scripts/gen_docs.py from sync/config.py. See docs/configuration.md.",
        **{k: v for k, v in document.items() if k not in ("title", "description")},
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    return {MARKDOWN: markdown(), SCHEMA: schema_text()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated file is out of date")
    args = parser.parse_args(argv)
    try:
        wanted = outputs()
    except MissingDescription as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"error: {path.relative_to(ROOT)} is out of date: run scripts/gen_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
