"""Verify before and after write: key/leaf pairing, chain order, and what the cloud reports."""
from dataclasses import replace
from datetime import timedelta

import pytest

from providers.base import RemoteSecret, ownership_labels
from sync import ca, verify
from sync.store import Bundle


@pytest.fixture(scope="module")
def bundle():
    root_key = ca.generate_key("ec-p256")
    root = ca.create_ca("CN=Root", root_key, timedelta(days=10))
    inter_key = ca.generate_key("ec-p256")
    inter = ca.create_ca("CN=Inter", inter_key, timedelta(days=10), parent=ca.Issuer(root, root_key))
    key = ca.generate_key("ec-p256")
    leaf = ca.issue_leaf(ca.Issuer(inter, inter_key), key.public_key(), common_name="a.example.internal",
                         validity=timedelta(days=1))
    return Bundle("a", 1, leaf, key, [inter], root)


def test_a_good_bundle_passes(bundle):
    verify.check_bundle(bundle)


def test_key_that_does_not_match_the_leaf_is_refused(bundle):
    with pytest.raises(verify.VerifyError, match="private key does not match"):
        verify.check_bundle(replace(bundle, private_key=ca.generate_key("ec-p256")))


def test_chain_out_of_order_is_refused(bundle):
    with pytest.raises(verify.VerifyError, match="chain out of order"):
        verify.check_bundle(replace(bundle, intermediates=[bundle.root], root=bundle.intermediates[0]))


def test_write_response_must_carry_our_fingerprint_and_a_version():
    labels = ownership_labels("a", "f" * 32)
    verify.check_written(RemoteSecret("a", labels, version="v1"), "f" * 32)
    with pytest.raises(verify.VerifyError, match="carries fingerprint"):
        verify.check_written(RemoteSecret("a", labels, version="v1"), "0" * 32)
    with pytest.raises(verify.VerifyError, match="no version"):
        verify.check_written(RemoteSecret("a", labels, version=None), "f" * 32)
    with pytest.raises(verify.VerifyError, match="differs"):
        verify.check_written(RemoteSecret("a", labels, version="v1", value="other"), "f" * 32, "ours")
