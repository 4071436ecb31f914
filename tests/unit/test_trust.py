"""Trust: a CA that refuses by default. Profiles name what they may issue for, CAs carry name
constraints, path lengths follow the hierarchy, and a bundle is validated as a relying party would
before any push. Checked with tools nobody here wrote: openssl verify, pkilint, cryptography's verifier."""

import json
import subprocess
import sys
import textwrap
from datetime import timedelta, UTC

import pytest
from cryptography.hazmat.primitives import serialization

from sync.config import ProfileConfig
from sync.errors import PolicyError
from sync.pki import certs, policy

OPEN_PROFILE = """
[profile.open]
ca = "issuing"
usages = ["serverAuth"]
"""


def run(*args, cwd, check=True):
    result = subprocess.run([sys.executable, "-m", "sync", *args], capture_output=True, text=True, cwd=cwd)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def append(workdir, text):
    with open(workdir / "sync.toml", "a") as handle:
        handle.write(textwrap.dedent(text))


def write_csr(path, *names: str):
    key = certs.generate_key("ec-p256")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


# -- 1. issuance is deny-by-default ----------------------------------------------------------------


def test_a_profile_without_allowed_domains_allows_no_name():
    profile = ProfileConfig(ca="issuing")
    with pytest.raises(
        PolicyError,
        match=r"^profile 'open': DNS name 'www.google.com' is not allowed: the profile "
        r"has no allowed_domains \(set allowed_domains, or allow_any_name = true\)$",
    ):
        policy.check_request(
            "open",
            profile,
            dns_names=["www.google.com"],
            ip_addresses=[],
            key_type="ec-p256",
            validity=timedelta(days=90),
        )
    with pytest.raises(PolicyError, match="IP address 10.0.0.1 is not allowed: the profile has no allowed_ips"):
        policy.check_request(
            "open", profile, dns_names=[], ip_addresses=["10.0.0.1"], key_type="ec-p256", validity=timedelta(days=90)
        )


def test_allow_any_name_is_an_explicit_opt_in():
    profile = ProfileConfig(ca="issuing", allow_any_name=True)
    policy.check_request(
        "any",
        profile,
        dns_names=["www.google.com"],
        ip_addresses=["192.0.2.1"],
        key_type="ec-p256",
        validity=timedelta(days=90),
    )
    with pytest.raises(ValueError, match="allow_any_name = true cannot be combined with allowed_domains"):
        ProfileConfig(ca="issuing", allow_any_name=True, allowed_domains=["*.example.internal"])


def test_sign_under_a_profile_that_names_nothing_is_refused_and_writes_nothing(workdir):
    append(workdir, OPEN_PROFILE)
    run("init", cwd=workdir)
    csr = write_csr(workdir / "google.csr", "www.google.com")
    result = run("sign", "--csr", str(csr), "--profile", "open", "--out", "chain.pem", cwd=workdir, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        "error: profile 'open': DNS name 'www.google.com' is not allowed: the profile has no "
        "allowed_domains (set allowed_domains, or allow_any_name = true)\n"
    )
    assert result.stdout == "" and not (workdir / "chain.pem").exists()
    assert json.loads(run("--output", "json", "list", cwd=workdir).stdout)["certificates"] == []


def test_apply_under_a_profile_that_names_nothing_is_refused(workdir):
    append(workdir, OPEN_PROFILE + '\n[certificate.google]\nprofile = "open"\ncommon_name = "www.google.com"\n')
    run("init", cwd=workdir)
    result = run("apply", cwd=workdir, check=False)
    assert result.returncode == 1
    assert result.stderr == (
        "error: issue google -> google: profile 'open': DNS name 'www.google.com' is not "
        "allowed: the profile has no allowed_domains (set allowed_domains, or allow_any_name "
        "= true)\n"
    )
    names = [c["name"] for c in json.loads(run("--output", "json", "list", cwd=workdir).stdout)["certificates"]]
    assert names == ["api"]


def test_allow_any_name_issues_and_init_and_plan_warn(workdir):
    append(workdir, '\n[profile.any]\nca = "issuing"\nallow_any_name = true\n')
    warning = (
        "warning: profile 'any' has allow_any_name = true: it issues certificates for any DNS name or IP address\n"
    )
    assert run("init", cwd=workdir).stderr == warning
    assert run("plan", cwd=workdir).stderr == warning
    plan = run("--output", "json", "plan", cwd=workdir)
    assert json.loads(plan.stdout)["warnings"] == [warning.removeprefix("warning: ").strip()]
    assert json.loads(run("--output", "json", "init", cwd=workdir).stdout)["warnings"] == [
        warning.removeprefix("warning: ").strip()
    ]
    csr = write_csr(workdir / "google.csr", "www.google.com")
    result = run("sign", "--csr", str(csr), "--profile", "any", "--out", "chain.pem", cwd=workdir)
    assert (workdir / "chain.pem").exists() and "issued www-google-com" in result.stdout


# -- 3. path length right --------------------------------------------------------------------------

THREE_LEVELS = """
[ca.root]
subject = "CN=Three Root CA,O=certsync tests"
key = "ec-p384"

[ca.policy]
parent = "root"
subject = "CN=Three Policy CA,O=certsync tests"
key = "ec-p384"

[ca.issuing]
parent = "policy"
subject = "CN=Three Issuing CA,O=certsync tests"
key = "ec-p256"

[profile.tls]
ca = "issuing"
allowed_domains = ["*.example.internal"]
usages = ["serverAuth", "clientAuth"]

[certificate.api]
profile = "tls"
common_name = "api.example.internal"
"""


def basic_constraints(cert):
    from cryptography import x509

    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value


def test_three_level_hierarchy_verifies_with_openssl(workdir):
    from cryptography import x509

    (workdir / "sync.toml").write_text(textwrap.dedent(THREE_LEVELS))
    run("init", cwd=workdir)
    run("apply", cwd=workdir)
    payload = json.loads(run("export", "api", "--format", "json", cwd=workdir).stdout)
    (workdir / "root.pem").write_text(payload["ca_certificate"])
    (workdir / "leaf.pem").write_text(payload["certificate"])
    (workdir / "intermediates.pem").write_text(payload["certificate_chain"])
    chain = x509.load_pem_x509_certificates(payload["certificate_chain"].encode())
    root = x509.load_pem_x509_certificate(payload["ca_certificate"].encode())
    # derived from the hierarchy: issuing 0, policy 1; the root (a trust anchor) is left unconstrained
    assert [basic_constraints(c).path_length for c in (*chain, root)] == [0, 1, None]
    for purpose in ("sslserver", "sslclient"):
        verify = subprocess.run(
            [
                "openssl",
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                "root.pem",
                "-untrusted",
                "intermediates.pem",
                "leaf.pem",
            ],
            capture_output=True,
            text=True,
            cwd=workdir,
        )
        assert verify.returncode == 0 and verify.stdout.strip() == "leaf.pem: OK", verify.stdout + verify.stderr


def test_path_length_that_contradicts_the_hierarchy_is_refused(workdir):
    text = textwrap.dedent(THREE_LEVELS).replace("[ca.policy]\n", "[ca.policy]\npath_length = 0\n")
    (workdir / "sync.toml").write_text(text)
    result = run("plan", cwd=workdir, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        "error: sync.toml: ca.policy.path_length: 0 leaves no room for the CA below it "
        "(issuing, 1 level deep): remove path_length or set it to at least 1\n"
    )
    (workdir / "sync.toml").write_text(text.replace("path_length = 0", "path_length = 3"))  # room to grow is fine
    run("init", cwd=workdir)


def test_init_refuses_a_ca_under_a_parent_whose_certificate_forbids_it(workdir):
    run("init", cwd=workdir)  # issuing is made with pathLen 0: nothing below it
    append(workdir, '\n[ca.sub]\nparent = "issuing"\nsubject = "CN=Sub CA"\n')
    result = run("init", cwd=workdir, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        "error: ca.sub: cannot be created under 'issuing': the certificate of CA 'issuing' has "
        "pathLen 0, but the declared hierarchy puts 1 CA level below it; give 'sub' another "
        "parent, or replace 'issuing'\n"
    )
    assert json.loads(run("--output", "json", "list", cwd=workdir).stdout)["cas"][-1]["name"] == "issuing"


def make_chain(key_type="ec-p256", policy_path_length=0):
    """root -> policy (pathLen as given) -> issuing -> leaf, built directly (certsync would refuse it)."""
    from datetime import datetime

    now = datetime.now(UTC)
    root_key = certs.generate_key(key_type)
    root = certs.create_ca("CN=Root", root_key, timedelta(days=10), now=now)
    policy_key = certs.generate_key(key_type)
    policy_ca = certs.create_ca(
        "CN=Policy",
        policy_key,
        timedelta(days=10),
        parent=certs.Issuer(root, root_key),
        path_length=policy_path_length,
        now=now,
    )
    issuing_key = certs.generate_key(key_type)
    issuing = certs.create_ca(
        "CN=Issuing", issuing_key, timedelta(days=10), parent=certs.Issuer(policy_ca, policy_key), now=now
    )
    key = certs.generate_key(key_type)
    leaf = certs.issue_leaf(
        certs.Issuer(issuing, issuing_key),
        key.public_key(),
        common_name="a.example.internal",
        validity=timedelta(days=1),
        now=now,
    )
    from sync.pki.bundle import Bundle

    return Bundle("a", 1, leaf, key, [issuing, policy_ca], root), now


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048", "ed25519"])
def test_check_bundle_refuses_a_violated_path_length(key_type):
    from sync.errors import VerifyError
    from sync.pki.bundle import check_bundle

    good, now = make_chain(key_type, policy_path_length=1)
    check_bundle(good, now=now)
    bad, now = make_chain(key_type, policy_path_length=0)
    with pytest.raises(
        VerifyError,
        match=r"^certificate 'a': 'CN=Policy' has pathLen 0 but 1 CA certificate "
        r"follows it",
    ):
        check_bundle(bad, now=now)


def test_check_bundle_refuses_a_chain_not_valid_at_the_validation_time():
    from sync.errors import VerifyError
    from sync.pki.bundle import check_bundle

    good, now = make_chain(policy_path_length=1)
    with pytest.raises(VerifyError, match=r"^certificate 'a': 'CN=a.example.internal' is not valid at "):
        check_bundle(good, now=now + timedelta(days=2))


def test_cryptography_relying_party_check_is_wired_in():
    """Our own path rules run first (they also cover Ed25519); cryptography's verifier must
    refuse the same chain on its own, with one line naming the certificate."""
    from sync.errors import VerifyError
    from sync.pki import bundle as bundle_mod

    bad, now = make_chain(policy_path_length=0)
    with pytest.raises(
        VerifyError,
        match=r"^certificate 'a': the chain from 'CN=a.example.internal' to 'CN=Root' "
        r"does not validate \(RFC 5280\): [^\n]+$",
    ):
        bundle_mod._relying_party(bad, now)
    good, now = make_chain(policy_path_length=1)
    bundle_mod._relying_party(good, now)


# -- 2. name constraints on CAs --------------------------------------------------------------------

CONSTRAINED = """
[ca.root]
subject = "CN=Constrained Root CA,O=certsync tests"
key = "ec-p384"
name_constraints = { excluded_dns = ["secret.example.internal"] }

[ca.issuing]
parent = "root"
subject = "CN=Constrained Issuing CA,O=certsync tests"
key = "ec-p256"
name_constraints = { permitted_dns = ["example.internal"], permitted_ip = ["10.0.0.0/8"], excluded_ip = ["10.99.0.0/16"] }

[profile.tls]
ca = "issuing"
allowed_domains = ["*.example.internal", "*.example.com"]
allowed_ips = ["10.0.0.0/8"]
usages = ["serverAuth"]

[certificate.api]
profile = "tls"
common_name = "api.example.internal"
ip_addresses = ["10.1.2.3"]
"""


@pytest.fixture
def constrained(workdir):
    (workdir / "sync.toml").write_text(textwrap.dedent(CONSTRAINED))
    run("init", cwd=workdir)
    return workdir


def test_name_constraints_are_written_critical_and_pass_pkilint(constrained):
    from cryptography import x509
    from sync import config
    from sync.app import App

    lint = str(__import__("pathlib").Path(sys.executable).parent / "lint_pkix_cert")
    with App(config.load(constrained / "sync.toml")).store.transaction() as tx:
        cas = {name: tx.authorities.active(name).certificate for name in ("root", "issuing")}
    extension = cas["issuing"].extensions.get_extension_for_class(x509.NameConstraints)
    assert extension.critical
    assert extension.value.permitted_subtrees == [
        x509.DNSName("example.internal"),
        x509.IPAddress(__import__("ipaddress").ip_network("10.0.0.0/8")),
    ]
    assert extension.value.excluded_subtrees == [x509.IPAddress(__import__("ipaddress").ip_network("10.99.0.0/16"))]
    root_constraints = cas["root"].extensions.get_extension_for_class(x509.NameConstraints)
    assert root_constraints.critical and root_constraints.value.permitted_subtrees is None
    for name, cert in cas.items():
        path = constrained / f"{name}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        result = subprocess.run([lint, "lint", "-s", "WARNING", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "names, message",
    [
        (
            'common_name = "api.example.com"',
            "CA 'issuing': DNS name 'api.example.com' is outside its name constraints (permitted: example.internal)",
        ),
        (
            'common_name = "secret.example.internal"',  # the root's exclusion, two levels up
            "CA 'root': DNS name 'secret.example.internal' is within its excluded name constraint 'secret.example.internal'",
        ),
        (
            'common_name = "ok.example.internal"\nip_addresses = ["10.99.0.1"]',
            "CA 'issuing': IP address 10.99.0.1 is within its excluded name constraint 10.99.0.0/16",
        ),
    ],
)
def test_certsync_refuses_to_issue_outside_name_constraints(constrained, names, message):
    append(constrained, f'\n[certificate.bad]\nprofile = "tls"\n{names}\n')
    result = run("apply", cwd=constrained, check=False)
    assert result.returncode == 1 and result.stderr == f"error: issue bad -> bad: {message}\n"
    listed = [c["name"] for c in json.loads(run("--output", "json", "list", cwd=constrained).stdout)["certificates"]]
    assert listed == ["api"]


def test_csr_outside_name_constraints_is_refused(constrained):
    csr = write_csr(constrained / "x.csr", "www.example.com")
    result = run("sign", "--csr", str(csr), "--profile", "tls", "--out", "chain.pem", cwd=constrained, check=False)
    assert result.returncode == 2 and result.stderr == (
        "error: CA 'issuing': DNS name 'www.example.com' is outside its name constraints (permitted: example.internal)\n"
    )
    assert not (constrained / "chain.pem").exists()


def test_openssl_refuses_a_leaf_that_violates_the_constraints(constrained):
    from sync import config
    from sync.app import App
    from sync.errors import VerifyError
    from sync.pki.bundle import Bundle, check_bundle

    run("apply", cwd=constrained)
    payload = json.loads(run("export", "api", "--format", "json", cwd=constrained).stdout)
    (constrained / "root.pem").write_text(payload["ca_certificate"])
    (constrained / "intermediates.pem").write_text(payload["certificate_chain"])
    (constrained / "good.pem").write_text(payload["certificate"])
    app = App(config.load(constrained / "sync.toml"))
    with app.store.transaction() as tx:
        issuing = tx.authorities.active("issuing")
        issuer = tx.authorities.issuer(issuing, None, None)
        root = tx.authorities.active("root").certificate
    for name, dns, ips in [
        ("outside", ["www.example.com"], []),
        ("excluded", ["secret.example.internal"], []),
        ("excluded-ip", ["ok.example.internal"], ["10.99.1.1"]),
    ]:
        key = certs.generate_key("ec-p256")
        leaf = certs.issue_leaf(
            issuer, key.public_key(), common_name=None, dns_names=dns, ip_addresses=ips, validity=timedelta(days=1)
        )
        (constrained / f"{name}.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        verify = subprocess.run(
            ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "intermediates.pem", f"{name}.pem"],
            capture_output=True,
            text=True,
            cwd=constrained,
        )
        assert verify.returncode != 0 and "subtree violation" in verify.stdout + verify.stderr, name
        with pytest.raises(
            VerifyError,
            match=r"^certificate 'x': CA 'CN=Constrained (Issuing|Root) CA,O=certsync tests'"
            r": (DNS name|IP address) .* name constraint",
        ):
            check_bundle(Bundle("x", 1, leaf, key, [issuer.certificate], root))
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "intermediates.pem", "good.pem"],
        capture_output=True,
        text=True,
        cwd=constrained,
    )
    assert verify.returncode == 0 and verify.stdout.strip() == "good.pem: OK", verify.stdout + verify.stderr


@pytest.mark.parametrize(
    "table, message",
    [
        ('{ permitted_dns = ["*.example.internal"] }', "permitted_dns: '*.example.internal' is not a DNS name subtree"),
        ('{ excluded_ip = ["10.0.0.1/8"] }', "excluded_ip: '10.0.0.1/8' is not an IP network like 10.0.0.0/8"),
        ("{}", "name_constraints: name at least one permitted or excluded subtree"),
        ('{ permitted_email = ["a"] }', "name_constraints.permitted_email: unknown key"),
    ],
)
def test_bad_name_constraints_are_one_line_config_errors(workdir, table, message):
    text = (workdir / "sync.toml").read_text().replace("[ca.issuing]\n", f"[ca.issuing]\nname_constraints = {table}\n")
    (workdir / "sync.toml").write_text(text)
    result = run("plan", cwd=workdir, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: sync.toml: ca.issuing.name_constraints") and message in result.stderr
