"""revokeCert (RFC 8555 7.6): by the account whose order issued the certificate, or signed with
the certificate's own key. The CA's CRL is reissued at once; OCSP answers from the store."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sync.ca import revoke as revocations
from sync.server.acme import jws as jose
from sync.server.acme.errors import AcmeError
from sync.server.acme.service import Ctx, Reply, audit

# RFC 5280 reason codes a subscriber may give (not cACompromise, certificateHold, removeFromCRL, ...)
REASONS = {0: "unspecified", 1: "keyCompromise", 3: "affiliationChanged", 4: "superseded", 5: "cessationOfOperation"}


def revoke_cert(ctx: Ctx) -> Reply:
    signed = ctx.signed(use_jwk=None)
    payload = signed.json()
    der = jose.b64decode(payload.get("certificate"), "certificate")
    reason_code = payload.get("reason", 0)
    if not isinstance(reason_code, int) or isinstance(reason_code, bool) or reason_code not in REASONS:
        raise AcmeError("badRevocationReason", f"reason must be one of {sorted(REASONS)}")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise AcmeError("malformed", "certificate: not a DER certificate") from None
    with ctx.state.transaction(serialized=True) as tx:  # publishes a CRL
        row = tx.certificates.by_serial(cert.serial_number)
        if row is None or row.cert_der != der or row.profile != ctx.profile:
            raise AcmeError("malformed", "this directory did not issue this certificate", status=404)
        _authorize(ctx, tx, row, cert)
        if row.state == "revoked":
            raise AcmeError("alreadyRevoked", f"already revoked ({row.revocation_reason})")
        revoked, others = revocations.revoke(
            ctx.state.config, tx, row.name, REASONS[reason_code], ctx.now, serial=row.serial
        )
        audit(
            ctx,
            tx,
            "revoke",
            certificate=row.name,
            serial=row.serial,
            actor=f"acme:{ctx.caller.account_id}" if ctx.caller and ctx.caller.account_id else "acme:certificate-key",
            detail={"reason": revoked.revocation_reason, "also_revoked": [o.serial for o in others]},
        )
    return Reply(None, 200)


def _authorize(ctx: Ctx, tx, row, cert: x509.Certificate) -> None:
    assert ctx.caller is not None
    if ctx.caller.account_id is not None:
        order = tx.acme.order_by_serial(row.serial)
        if order is None or order.account_id != ctx.caller.account_id:
            raise AcmeError("unauthorized", "this account did not order this certificate")
        return
    spki = ctx.caller.key.key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if spki != cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo):
        raise AcmeError("unauthorized", "the JWS is signed neither by an account nor by the certificate's key")
