"""Property-based fuzzing (Hypothesis) of what users hand certsync: config dicts and TOML text,
CERTSYNC_* environment overrides, duration strings, names, and CSRs (mutated DER and PEM, odd
extensions, huge SAN lists, wrong signatures).

Properties: no unexpected exception (never a traceback); a rejected input raises a UsageError
(ConfigError, PolicyError...) whose every line names its source and field, or exits 2 through the CLI
with `error:` lines only; a rejected CSR writes nothing to the store and calls no cloud.

Profiles: "ci" (default, 100 examples a property, derandomized) and "deep" (2,000 a property,
>= 10,000 in all):

    CERTSYNC_FUZZ=deep python -m pytest tests/unit/test_fuzz.py -p no:cacheprovider --hypothesis-show-statistics
"""

from __future__ import annotations

import copy
import os
import sqlite3
import tomllib
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sync import config as cfgmod, durations as durations_mod
from sync.errors import CertsyncError, UsageError

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "deep",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("CERTSYNC_FUZZ", "ci"))

BASE = """
[store]
url = "sqlite:///certsync.db"

[ca.root]
subject = "CN=Fuzz Root CA,O=certsync tests"
key = "ec-p256"
validity = "3650d"

[ca.issuing]
parent = "root"
subject = "CN=Fuzz Issuing CA,O=certsync tests"
key = "ec-p256"
validity = "1825d"

[profile.tls-server]
ca = "issuing"
key = "ec-p256"
validity = "90d"
renew_before = "30d"
allowed_domains = ["*.example.internal"]
usages = ["serverAuth"]

[destination.aws-prod]
provider = "aws"
region = "eu-west-1"
format = "json"

[certificate.api]
profile = "tls-server"
common_name = "api.example.internal"
dns_names = ["api.example.internal"]
destinations = ["aws-prod"]
"""
BASE_DICT = tomllib.loads(BASE)


def assert_one_line_per_field(exc: BaseException, source: str) -> None:
    """Each line of a rejection says `SOURCE: FIELD: rule`."""
    assert isinstance(exc, UsageError), f"{type(exc).__name__}: {exc}"
    assert exc.exit_code == 2
    text = str(exc)
    assert text.strip(), "an empty error"
    for line in text.splitlines():
        assert line.startswith(f"{source}: "), line
        field, _, rule = line[len(source) + 2 :].partition(": ")
        assert field.strip() and rule.strip(), f"no field or no rule in {line!r}"


# --- config values ---------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "0",
            "0d",
            "90d",
            "-1d",
            "1e9d",
            "33%",
            "100%",
            "ec-p256",
            "rsa-1024",
            "*.example.internal",
            "x" * 300,
            "CN=",
            "CN=a,O=b",
            "\x00",
            "gcp",
            "azure",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=8,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


PATHS = [p for p in _paths(BASE_DICT) if p]


@st.composite
def mutated_configs(draw):
    data = copy.deepcopy(BASE_DICT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            op = draw(st.sampled_from(["set", "drop", "add"]))
            if op == "set":
                parent[path[-1]] = draw(values)
            elif op == "drop" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=12))] = draw(values)
        except (KeyError, IndexError, TypeError):
            pass
    return data


@given(mutated_configs())
def test_config_dicts_load_or_are_rejected_per_field(data):
    try:
        cfgmod.from_dict(data, source="fuzz.toml")
    except CertsyncError as exc:
        assert_one_line_per_field(exc, "fuzz.toml")


# --- TOML text ---------------------------------------------------------------------------------------


@st.composite
def mutated_toml(draw):
    text = BASE
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 20)))
        text = text[:i] + draw(st.text(max_size=10)) + text[j:]
    return text


@given(mutated_toml())
def test_toml_text_loads_or_is_rejected_per_field(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("toml") / "sync.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        cfgmod.load(path)
    except CertsyncError as exc:
        assert_one_line_per_field(exc, str(path))


# --- environment overrides -------------------------------------------------------------------------

ENV_NAMES = [
    "CERTSYNC_STORE__URL",
    "CERTSYNC_STORE",
    "CERTSYNC_CA",
    "CERTSYNC_PROFILE__TLS_SERVER__VALIDITY",
    "CERTSYNC_CERTIFICATE",
    "CERTSYNC_DESTINATION__AWS_PROD__REGION",
    "CERTSYNC_NOTIFY",
    "CERTSYNC_NOTIFY__WEBHOOK_URL",
    "CERTSYNC_CERTIFICATE__API__DNS_NAMES",
    "CERTSYNC_DESTINATION",
    "CERTSYNC_CA__ROOT__VALIDITY",
    "CERTSYNC_PROFILE",
]


@contextmanager
def environment(overrides: dict[str, str]):
    saved = {k: os.environ.get(k) for k in overrides}
    try:
        os.environ.update(overrides)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


env_values = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=30),
    values.map(lambda v: __import__("json").dumps(v)),
)


@given(
    st.dictionaries(
        st.one_of(st.sampled_from(ENV_NAMES), st.from_regex(r"CERTSYNC_[A-Z_]{1,20}", fullmatch=True)),
        env_values,
        min_size=1,
        max_size=3,
    )
)
def test_env_overrides_load_or_are_rejected_per_field(overrides):
    with environment(overrides):
        try:
            cfgmod.from_dict(copy.deepcopy(BASE_DICT), source="fuzz.toml")
        except CertsyncError as exc:
            assert_one_line_per_field(exc, "fuzz.toml")


# --- durations and names ---------------------------------------------------------------------------

durations = st.one_of(st.text(max_size=20), st.from_regex(r"\s*[+-]?[0-9٠-٩]{0,25}[dhmsDHMS%]?\s*", fullmatch=True))


@given(durations)
def test_durations_parse_or_raise_value_error(text):
    for parse in (durations_mod.parse_duration, durations_mod.parse_wait, durations_mod.parse_renew_before):
        try:
            parse(text)
        except ValueError as exc:
            assert str(exc) and "\n" not in str(exc)


@given(st.sampled_from(["validity", "renew_before"]), durations, st.text(min_size=1, max_size=80))
def test_durations_and_names_in_a_config(field, duration, name):
    data = copy.deepcopy(BASE_DICT)
    data["profile"]["tls-server"][field] = duration
    data["certificate"][name] = dict(data["certificate"]["api"])
    try:
        cfgmod.from_dict(data, source="fuzz.toml")
    except CertsyncError as exc:
        assert_one_line_per_field(exc, "fuzz.toml")


# --- the CLI: exit 2, error lines only, no store written ----------------------------------------------


@given(mutated_toml())
@settings(max_examples=max(10, settings().max_examples // 4))
def test_cli_rejects_bad_configs_with_exit_2_and_no_store(tmp_path_factory, text):
    from sync.cli import cli

    folder = tmp_path_factory.mktemp("cli")
    (folder / "sync.toml").write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        cfgmod.load(folder / "sync.toml")
    except CertsyncError:
        pass
    else:
        assume(False)  # only rejected configs here
    result = CliRunner().invoke(cli, ["--config", str(folder / "sync.toml"), "plan"])
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output and "internal error" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and all(line.startswith("error: ") for line in lines), result.output
    assert not (folder / "certsync.db").exists()


# --- cases the fuzzing found, kept as plain tests ------------------------------------------------------


@pytest.mark.parametrize("key", [" ", "", "a\nb", "\x1b[31m"])
def test_an_unknown_key_is_named_readably_on_one_line(key):
    data = copy.deepcopy(BASE_DICT)
    data[key] = None
    with pytest.raises(UsageError) as info:
        cfgmod.from_dict(data, source="fuzz.toml")
    assert_one_line_per_field(info.value, "fuzz.toml")
    assert str(info.value) == f"fuzz.toml: {__import__('json').dumps(key)}: unknown key"


# --- CSRs through App.sign: rejected => a one-line UsageError, no store write, no cloud call ---------


class _NoCloud:
    """A providers factory that counts every call: a CSR enrollment without --to reaches no cloud."""

    calls = 0

    def __call__(self, destination):
        _NoCloud.calls += 1
        raise AssertionError(f"a cloud was called for {destination}")


@pytest.fixture(scope="module")
def ca_store(tmp_path_factory):
    import base64
    from sync.app import App

    folder = tmp_path_factory.mktemp("fuzz-ca")
    (folder / "sync.toml").write_text(BASE.replace("sqlite:///certsync.db", f"sqlite:///{folder}/certsync.db"))
    saved = os.environ.get("CERTSYNC_MASTER_KEY")
    os.environ["CERTSYNC_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    config = cfgmod.load(folder / "sync.toml")
    with App(config, providers=_NoCloud()) as app:
        app.init()
    yield config, folder / "certsync.db"
    if saved is None:
        os.environ.pop("CERTSYNC_MASTER_KEY", None)
    else:
        os.environ["CERTSYNC_MASTER_KEY"] = saved


def store_rows(db: Path) -> dict[str, list]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables}


_KEY = ec.generate_private_key(ec.SECP256R1())
_OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
dns_labels = st.from_regex(r"[a-z0-9*-]{1,12}(\.[a-z0-9-]{1,8}){0,2}\.example\.internal", fullmatch=True)


@st.composite
def csrs(draw):
    cn = draw(st.one_of(st.just("api.example.internal"), st.text(max_size=70)))
    try:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    except ValueError:
        subject = x509.Name([])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    sans = draw(
        st.one_of(
            st.lists(dns_labels, max_size=5),
            st.lists(dns_labels, min_size=200, max_size=600, unique=True),  # huge SAN lists
            st.lists(st.text(min_size=1, max_size=30), max_size=5),
        )
    )
    try:
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=draw(st.booleans())
            )
        if draw(st.booleans()):  # an odd, maybe critical, unknown extension
            oid = x509.ObjectIdentifier(f"1.3.6.1.4.1.{draw(st.integers(1, 99999))}.{draw(st.integers(0, 9))}")
            builder = builder.add_extension(
                x509.UnrecognizedExtension(oid, draw(st.binary(max_size=40))), critical=draw(st.booleans())
            )
        if draw(st.booleans()):
            builder = builder.add_extension(
                x509.BasicConstraints(ca=draw(st.booleans()), path_length=None), critical=True
            )
        csr = builder.sign(_KEY, hashes.SHA256())
    except ValueError:
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(_KEY, hashes.SHA256())
    der = csr.public_bytes(serialization.Encoding.DER)
    mutation = draw(st.sampled_from(["none", "flip", "cut", "resign", "pem", "pem-garbage", "random"]))
    # positions are drawn as plain integers and reduced: ECDSA signatures vary in length
    where = draw(st.integers(0, 2**32))
    if mutation == "flip":
        i = where % len(der)
        der = der[:i] + bytes([der[i] ^ draw(st.integers(1, 255))]) + der[i + 1 :]
    elif mutation == "cut":
        der = der[: where % (len(der) + 1)]
    elif mutation == "resign":  # a signature that does not verify: a byte of it changed
        i = len(der) - 1 - where % 16
        der = der[:i] + bytes([der[i] ^ 0x01]) + der[i + 1 :]
    elif mutation == "pem":
        return csr.public_bytes(serialization.Encoding.PEM)
    elif mutation == "pem-garbage":
        pem = csr.public_bytes(serialization.Encoding.PEM)
        i = where % (len(pem) + 1)
        return pem[:i] + draw(st.binary(max_size=20)) + pem[i:]
    elif mutation == "random":
        return draw(st.binary(max_size=300))
    return der


@given(csrs())
def test_csrs_are_issued_or_refused_with_nothing_written(ca_store, data):
    from sync.app import App

    config, db = ca_store
    before, calls = store_rows(db), _NoCloud.calls
    try:
        with App(config, providers=_NoCloud()) as app:
            app.sign(data, "tls-server")
    except CertsyncError as exc:
        assert isinstance(exc, UsageError), f"{type(exc).__name__}: {exc}"
        assert str(exc).strip() and "\n" not in str(exc).strip(), repr(str(exc))
        assert store_rows(db) == before, "a refused CSR wrote to the store"
    assert _NoCloud.calls == calls


@pytest.mark.parametrize("name", ["\x85", "a\u2028b", "x\ty", "\x1b"])
def test_a_certificate_name_with_a_line_break_stays_on_its_line(name):
    data = copy.deepcopy(BASE_DICT)
    data["certificate"][name] = dict(data["certificate"]["api"])
    with pytest.raises(UsageError) as info:
        cfgmod.from_dict(data, source="fuzz.toml")
    assert_one_line_per_field(info.value, "fuzz.toml")
    assert all(line.isprintable() for line in str(info.value).splitlines())


@pytest.mark.parametrize("encoding", ["der", "pem"])
def test_a_csr_with_an_unknown_version_is_refused_on_one_line(encoding):
    from sync.pki.csr import load_csr

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.internal")]))
        .sign(_KEY, hashes.SHA256())
    )
    der = csr.public_bytes(serialization.Encoding.DER)
    der = der.replace(b"\x02\x01\x00", b"\x02\x01\x01", 1)  # version v2: not a PKCS#10 version
    data = (
        der
        if encoding == "der"
        else (
            b"-----BEGIN CERTIFICATE REQUEST-----\n"
            + __import__("base64").encodebytes(der)
            + b"-----END CERTIFICATE REQUEST-----\n"
        )
    )
    with pytest.raises(UsageError, match="^CSR: not a PEM or DER certificate signing request"):
        load_csr(data)
