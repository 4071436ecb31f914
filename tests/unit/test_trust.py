"""Trust: a CA that refuses by default. Profiles name what they may issue for, CAs carry name
constraints, path lengths follow the hierarchy, and a bundle is validated as a relying party would
before any push. Checked with tools nobody here wrote: openssl verify, pkilint, cryptography's verifier."""
import json
import subprocess
import sys
import textwrap
from datetime import timedelta

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
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


# -- 1. issuance is deny-by-default ----------------------------------------------------------------

def test_a_profile_without_allowed_domains_allows_no_name():
    profile = ProfileConfig(ca="issuing")
    with pytest.raises(PolicyError, match=r"^profile 'open': DNS name 'www.google.com' is not allowed: the profile "
                                          r"has no allowed_domains \(set allowed_domains, or allow_any_name = true\)$"):
        policy.check_request("open", profile, dns_names=["www.google.com"], ip_addresses=[], key_type="ec-p256",
                             validity=timedelta(days=90))
    with pytest.raises(PolicyError, match="IP address 10.0.0.1 is not allowed: the profile has no allowed_ips"):
        policy.check_request("open", profile, dns_names=[], ip_addresses=["10.0.0.1"], key_type="ec-p256",
                             validity=timedelta(days=90))


def test_allow_any_name_is_an_explicit_opt_in():
    profile = ProfileConfig(ca="issuing", allow_any_name=True)
    policy.check_request("any", profile, dns_names=["www.google.com"], ip_addresses=["192.0.2.1"], key_type="ec-p256",
                         validity=timedelta(days=90))
    with pytest.raises(ValueError, match="allow_any_name = true cannot be combined with allowed_domains"):
        ProfileConfig(ca="issuing", allow_any_name=True, allowed_domains=["*.example.internal"])


def test_sign_under_a_profile_that_names_nothing_is_refused_and_writes_nothing(workdir):
    append(workdir, OPEN_PROFILE)
    run("init", cwd=workdir)
    csr = write_csr(workdir / "google.csr", "www.google.com")
    result = run("sign", "--csr", str(csr), "--profile", "open", "--out", "chain.pem", cwd=workdir, check=False)
    assert result.returncode == 2
    assert result.stderr == ("error: profile 'open': DNS name 'www.google.com' is not allowed: the profile has no "
                             "allowed_domains (set allowed_domains, or allow_any_name = true)\n")
    assert result.stdout == "" and not (workdir / "chain.pem").exists()
    assert json.loads(run("--output", "json", "list", cwd=workdir).stdout)["certificates"] == []


def test_apply_under_a_profile_that_names_nothing_is_refused(workdir):
    append(workdir, OPEN_PROFILE + '\n[certificate.google]\nprofile = "open"\ncommon_name = "www.google.com"\n')
    run("init", cwd=workdir)
    result = run("apply", cwd=workdir, check=False)
    assert result.returncode == 1
    assert result.stderr == ("error: issue google -> google: profile 'open': DNS name 'www.google.com' is not "
                             "allowed: the profile has no allowed_domains (set allowed_domains, or allow_any_name "
                             "= true)\n")
    names = [c["name"] for c in json.loads(run("--output", "json", "list", cwd=workdir).stdout)["certificates"]]
    assert names == ["api"]


def test_allow_any_name_issues_and_init_and_plan_warn(workdir):
    append(workdir, '\n[profile.any]\nca = "issuing"\nallow_any_name = true\n')
    warning = ("warning: profile 'any' has allow_any_name = true: it issues certificates for any DNS name "
               "or IP address\n")
    assert run("init", cwd=workdir).stderr == warning
    assert run("plan", cwd=workdir).stderr == warning
    plan = run("--output", "json", "plan", cwd=workdir)
    assert json.loads(plan.stdout)["warnings"] == [warning.removeprefix("warning: ").strip()]
    assert json.loads(run("--output", "json", "init", cwd=workdir).stdout)["warnings"] == \
        [warning.removeprefix("warning: ").strip()]
    csr = write_csr(workdir / "google.csr", "www.google.com")
    result = run("sign", "--csr", str(csr), "--profile", "any", "--out", "chain.pem", cwd=workdir)
    assert (workdir / "chain.pem").exists() and "issued www-google-com" in result.stdout
