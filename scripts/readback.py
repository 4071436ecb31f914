"""Demo step: read every pushed certificate back from its cloud and check it with openssl.

Usage: .venv/bin/python scripts/readback.py CONFIG
"""

import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from providers.base import load_provider_factory
from sync import config as config_mod


def leaf_and_chain(payload: str, fmt: str) -> list[x509.Certificate]:
    if fmt == "json":
        doc = json.loads(payload)
        return x509.load_pem_x509_certificates((doc["certificate"] + doc["certificate_chain"]).encode())
    if fmt == "pem":
        return x509.load_pem_x509_certificates(payload.encode())
    _, leaf, chain = pkcs12.load_key_and_certificates(base64.b64decode(payload), None)
    return [leaf, *chain]


def main(path: str) -> int:
    cfg = config_mod.load(path)
    root = subprocess.run(
        [sys.executable, "-m", "sync", "--config", path, "export", next(iter(cfg.certificate)), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "root.pem").write_text(json.loads(root)["ca_certificate"])
        for cert_name, spec in cfg.certificate.items():
            for ref in spec.targets(cert_name):
                dest = cfg.destination[ref.to]
                secret = load_provider_factory(dest.provider)(dest).get(ref.name)
                certs = leaf_and_chain(secret.value, dest.format)
                (Path(tmp) / "leaf.pem").write_bytes(certs[0].public_bytes(Encoding.PEM))
                (Path(tmp) / "chain.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs[1:]))
                verify = subprocess.run(
                    ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                )
                ok = verify.returncode == 0
                failures += not ok
                print(
                    f"{ref.to}/{ref.name}: {dest.format}, {certs[0].subject.rfc4514_string()}, "
                    f"serial {certs[0].serial_number:x}, not after {certs[0].not_valid_after_utc:%Y-%m-%d}, "
                    f"openssl verify: {'OK' if ok else verify.stdout.strip() + verify.stderr.strip()}"
                )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
