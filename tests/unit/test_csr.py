"""CSR enrollment checks, with CSRs made by `openssl req` (a tool nobody here wrote) and by cryptography."""

import ipaddress
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync.pki import certs
from sync.config import ProfileConfig
from sync.pki.csr import CsrRequest, check_csr, load_csr
from sync.errors import PolicyError, UsageError

ALL_KEYS = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]
PROFILE = ProfileConfig(
    ca="issuing",
    key="ec-p256",
    allowed_keys=ALL_KEYS,
    allowed_domains=["*.example.internal", "example.internal"],
    allowed_ips=["10.0.0.0/8"],
)
NEWKEY = {
    "rsa-2048": ["-newkey", "rsa:2048"],
    "rsa-1024": ["-newkey", "rsa:1024"],
    "ec-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "ec-secp256k1": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
    "ed25519": ["-newkey", "ed25519"],
}


def openssl_csr(
    tmp_path: Path,
    key: str,
    *,
    subject: str = "/CN=api.example.internal",
    san: str | None = "subjectAltName=DNS:www.example.internal,IP:10.1.2.3",
    extra: tuple[str, ...] = (),
    outform: str = "PEM",
) -> bytes:
    out = tmp_path / f"{key}.csr"
    args = [
        "openssl",
        "req",
        "-new",
        *NEWKEY[key],
        "-nodes",
        "-keyout",
        str(tmp_path / f"{key}.key"),
        "-subj",
        subject,
        "-outform",
        outform,
        "-out",
        str(out),
        *extra,
    ]
    if san:
        args += ["-addext", san]
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def make_csr(
    *,
    key_type: str = "ec-p256",
    cn: str | None = "api.example.internal",
    dns=(),
    ips=(),
    extensions=(),
    extra_subject=(),
) -> x509.CertificateSigningRequest:
    key = certs.generate_key(key_type)
    attrs = ([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []) + list(extra_subject)
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    for ext in extensions:
        builder = builder.add_extension(ext, critical=True)
    return builder.sign(key, certs.signature_hash(key))


# --- openssl-made CSRs --------------------------------------------------------------------------


@pytest.mark.parametrize("key,key_type", [("rsa-2048", "rsa-2048"), ("ec-p256", "ec-p256"), ("ed25519", "ed25519")])
def test_openssl_csrs_are_accepted(tmp_path, key, key_type):
    request = check_csr(load_csr(openssl_csr(tmp_path, key)), "tls-server", PROFILE)
    assert isinstance(request, CsrRequest)
    assert request.key_type == key_type
    assert request.common_name == "api.example.internal"
    assert request.dns_names == ("api.example.internal", "www.example.internal")
    assert request.ip_addresses == ("10.1.2.3",)


def test_der_csr_is_detected(tmp_path):
    data = openssl_csr(tmp_path, "ec-p256", outform="DER")
    assert not data.startswith(b"-----")
    assert check_csr(load_csr(data), "tls-server", PROFILE).key_type == "ec-p256"


def test_rsa_1024_is_refused(tmp_path):
    csr = load_csr(openssl_csr(tmp_path, "rsa-1024"))
    with pytest.raises(UsageError, match=r"RSA key size 1024 is not accepted \(accepted: 2048, 3072, 4096\)"):
        check_csr(csr, "tls-server", PROFILE)


def test_secp256k1_is_refused_naming_the_curve(tmp_path):
    csr = load_csr(openssl_csr(tmp_path, "ec-secp256k1"))
    with pytest.raises(UsageError, match="EC curve secp256k1 is not accepted"):
        check_csr(csr, "tls-server", PROFILE)


def test_openssl_ca_request_is_refused(tmp_path):
    data = openssl_csr(tmp_path, "ec-p256", extra=("-addext", "basicConstraints=critical,CA:TRUE"))
    with pytest.raises(UsageError, match="CA:TRUE"):
        check_csr(load_csr(data), "tls-server", PROFILE)


def test_issued_certificate_takes_names_from_policy_not_the_csr(tmp_path):
    """O/OU and requested extensions (EKU codeSigning, KU) stay out of the certificate."""
    data = openssl_csr(
        tmp_path,
        "ec-p256",
        subject="/CN=api.example.internal/O=Evil Corp/OU=Takeover",
        extra=(
            "-addext",
            "extendedKeyUsage=codeSigning",
            "-addext",
            "keyUsage=critical,digitalSignature,nonRepudiation",
        ),
    )
    request = check_csr(load_csr(data), "tls-server", PROFILE)
    root_key, issuing_key = certs.generate_key("ec-p256"), certs.generate_key("ec-p256")
    root = certs.create_ca("CN=Test Root CA", root_key, timedelta(days=30))
    issuing = certs.create_ca(
        "CN=Test Issuing CA", issuing_key, timedelta(days=20), parent=certs.Issuer(root, root_key)
    )
    leaf = certs.issue_leaf(
        certs.Issuer(issuing, issuing_key),
        request.public_key,
        common_name=request.common_name,
        dns_names=request.dns_names,
        ip_addresses=request.ip_addresses,
        usages=PROFILE.usages,
        validity=PROFILE.validity,
    )
    for name, obj in (("root", root), ("issuing", issuing), ("leaf", leaf)):
        (tmp_path / f"{name}.pem").write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    shown = subprocess.run(
        [
            "openssl",
            "x509",
            "-in",
            str(tmp_path / "leaf.pem"),
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName,extendedKeyUsage,keyUsage",
        ],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert "subject=CN = api.example.internal\n" in shown.stdout, shown.stdout
    assert "Evil" not in shown.stdout and "Takeover" not in shown.stdout
    assert "DNS:api.example.internal, DNS:www.example.internal, IP Address:10.1.2.3" in shown.stdout
    assert "TLS Web Server Authentication" in shown.stdout and "Code Signing" not in shown.stdout
    assert "Non Repudiation" not in shown.stdout
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            str(tmp_path / "root.pem"),
            "-untrusted",
            str(tmp_path / "issuing.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the key in the certificate is the one whose private half openssl wrote
    key = serialization.load_pem_private_key((tmp_path / "ec-p256.key").read_bytes(), None)
    assert leaf.public_key() == key.public_key()


# --- cryptography-made CSRs ---------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ALL_KEYS)
def test_every_issued_key_type_is_accepted(key_type):
    request = check_csr(make_csr(key_type=key_type), "tls-server", PROFILE)
    assert request.key_type == key_type and request.dns_names == ("api.example.internal",)


@pytest.mark.parametrize("curve", [ec.SECP521R1(), ec.SECP224R1(), ec.BrainpoolP256R1()])
def test_other_curves_are_refused(curve):
    key = ec.generate_private_key(curve)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.internal")]))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(UsageError, match=f"EC curve {curve.name} is not accepted"):
        check_csr(csr, "tls-server", PROFILE)


@pytest.mark.parametrize("maker", ["openssl-rsa-2048", "openssl-ec-p256", "cryptography-ed25519"])
def test_broken_signature_is_refused(tmp_path, maker):
    if maker.startswith("openssl-"):
        csr = load_csr(openssl_csr(tmp_path, maker.removeprefix("openssl-")))
    else:
        csr = make_csr(key_type="ed25519")
    data = bytearray(csr.public_bytes(serialization.Encoding.DER))
    data[-1] ^= 0x01  # the signature is the last field: flip a bit of its last byte
    broken = load_csr(bytes(data))
    assert broken.signature != csr.signature and broken.tbs_certrequest_bytes == csr.tbs_certrequest_bytes
    with pytest.raises(UsageError, match="signature does not verify"):
        check_csr(broken, "tls-server", PROFILE)


def test_key_cert_sign_request_is_refused():
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    with pytest.raises(UsageError, match="keyCertSign"):
        check_csr(make_csr(extensions=[usage]), "tls-server", PROFILE)


def test_ca_true_request_is_refused():
    with pytest.raises(UsageError, match=r"CA:TRUE"):
        check_csr(make_csr(extensions=[x509.BasicConstraints(ca=True, path_length=None)]), "tls-server", PROFILE)
    # CA:FALSE asked explicitly is fine
    check_csr(make_csr(extensions=[x509.BasicConstraints(ca=False, path_length=None)]), "tls-server", PROFILE)


@pytest.mark.parametrize(
    "kwargs,rule",
    [
        ({"cn": "api.evil.example"}, r"DNS name 'api.evil.example' is not within allowed_domains"),
        (
            {"dns": ["www.example.internal", "deep.api.example.internal"]},
            r"DNS name 'deep.api.example.internal' is not within allowed_domains",
        ),
        ({"ips": ["192.168.1.1"]}, r"IP address 192.168.1.1 is not within allowed_ips"),
        ({"cn": "172.16.0.1"}, r"IP address 172.16.0.1 is not within allowed_ips"),
    ],
)
def test_names_outside_the_profile_are_refused_naming_the_rule(kwargs, rule):
    with pytest.raises(PolicyError, match=f"profile 'tls-server': {rule}"):
        check_csr(make_csr(**kwargs), "tls-server", PROFILE)


def test_key_type_outside_the_profile_is_refused():
    # without allowed_keys, a profile accepts exactly its own key type
    strict = ProfileConfig(ca="issuing", key="ec-p256", allowed_domains=["*.example.internal"])
    assert check_csr(make_csr(), "strict", strict).key_type == "ec-p256"
    with pytest.raises(PolicyError, match=r"profile 'strict': key type rsa-2048 is not allowed \(allowed: ec-p256\)"):
        check_csr(make_csr(key_type="rsa-2048"), "strict", strict)


def test_ip_cn_and_cn_that_is_not_a_name():
    request = check_csr(make_csr(cn="10.9.8.7", dns=["a.example.internal"]), "tls-server", PROFILE)
    assert request.common_name == "10.9.8.7" and request.ip_addresses == ("10.9.8.7",)
    assert request.dns_names == ("a.example.internal",)
    # "My Server" is not a DNS name: ignored like O/OU; the CN becomes the first SAN
    request = check_csr(make_csr(cn="My Server", dns=["B.Example.Internal"]), "tls-server", PROFILE)
    assert request.common_name == "b.example.internal" and request.dns_names == ("b.example.internal",)
    request = check_csr(make_csr(cn=None, ips=["10.0.0.1"]), "tls-server", PROFILE)
    assert request.common_name == "10.0.0.1" and request.dns_names == ()


def test_no_usable_name_is_refused():
    with pytest.raises(UsageError, match="no DNS name or IP address"):
        check_csr(make_csr(cn="My Server"), "tls-server", PROFILE)


def test_other_san_types_are_refused():
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.internal")]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("a@example.internal")]), critical=False)
    )
    key = certs.generate_key("ec-p256")
    with pytest.raises(UsageError, match="email"):
        check_csr(csr.sign(key, hashes.SHA256()), "tls-server", PROFILE)


@pytest.mark.parametrize(
    "name",
    [
        "under_score.example.internal",
        "a..example.internal",
        "-a.example.internal",
        "*.*.example.internal",
        "a.*.example.internal",
        "trailing.example.internal.",
    ],
)
def test_invalid_dns_sans_are_refused(name):
    with pytest.raises(UsageError, match="not a valid DNS name"):
        check_csr(make_csr(cn=None, dns=[name]), "tls-server", PROFILE)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n",
        b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n",
        b"\x30\x82\x01\x00\x30",
    ],
)
def test_malformed_input_is_refused(data):
    with pytest.raises(UsageError, match="^CSR: not a PEM or DER certificate signing request$"):
        load_csr(data)


def test_a_certificate_is_not_a_csr(tmp_path):
    key = certs.generate_key("ec-p256")
    cert = certs.create_ca("CN=x", key, timedelta(days=1))
    with pytest.raises(UsageError, match="not a PEM or DER certificate signing request"):
        load_csr(cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(UsageError, match="not a PEM or DER certificate signing request"):
        load_csr(cert.public_bytes(serialization.Encoding.DER))
