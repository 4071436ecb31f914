"""Verify before and after write: key/leaf pairing, chain order, and what the cloud reports."""

from dataclasses import replace
from datetime import timedelta

import pytest

from providers.base import RemoteSecret, ownership_labels
from sync.errors import VerifyError
from sync.pki import certs
from sync.pki.bundle import Bundle, check_bundle
from sync.reconcile.verify import check_written


@pytest.fixture(scope="module")
def bundle():
    root_key = certs.generate_key("ec-p256")
    root = certs.create_ca("CN=Root", root_key, timedelta(days=10))
    inter_key = certs.generate_key("ec-p256")
    inter = certs.create_ca("CN=Inter", inter_key, timedelta(days=10), parent=certs.Issuer(root, root_key))
    key = certs.generate_key("ec-p256")
    leaf = certs.issue_leaf(
        certs.Issuer(inter, inter_key), key.public_key(), common_name="a.example.internal", validity=timedelta(days=1)
    )
    return Bundle("a", 1, leaf, key, [inter], root)


def test_a_good_bundle_passes(bundle):
    check_bundle(bundle)


def test_key_that_does_not_match_the_leaf_is_refused(bundle):
    with pytest.raises(VerifyError, match="private key does not match"):
        check_bundle(replace(bundle, private_key=certs.generate_key("ec-p256")))


def test_chain_out_of_order_is_refused(bundle):
    with pytest.raises(VerifyError, match="chain out of order"):
        check_bundle(replace(bundle, intermediates=[bundle.root], root=bundle.intermediates[0]))


def test_write_response_must_carry_our_fingerprint_and_a_version():
    labels = ownership_labels("a", "f" * 32)
    check_written(RemoteSecret("a", labels, version="v1"), "f" * 32)
    with pytest.raises(VerifyError, match="carries fingerprint"):
        check_written(RemoteSecret("a", labels, version="v1"), "0" * 32)
    with pytest.raises(VerifyError, match="no version"):
        check_written(RemoteSecret("a", labels, version=None), "f" * 32)
    with pytest.raises(VerifyError, match="differs"):
        check_written(RemoteSecret("a", labels, version="v1", value="other"), "f" * 32, "ours")
