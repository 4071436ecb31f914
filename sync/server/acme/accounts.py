"""Directory, accounts (RFC 8555 7.1.1, 7.3): newAccount (with External Account Binding),
account update and deactivation, the account's orders, key rollover."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sync.server.acme import jws as jose
from sync.server.acme.errors import AcmeError
from sync.server.acme.service import Ctx, Reply, audit
from sync.store import Transaction

if TYPE_CHECKING:
    from sync.store.models import AcmeEabKey

MAX_CONTACTS = 10
_MAILTO = re.compile(r"^mailto:[^@\s,;]+@[A-Za-z0-9.-]+$")


def directory(ctx: Ctx) -> Reply:
    return Reply(
        {
            "newNonce": ctx.link("new-nonce"),
            "newAccount": ctx.link("new-account"),
            "newOrder": ctx.link("new-order"),
            "revokeCert": ctx.link("revoke-cert"),
            "keyChange": ctx.link("key-change"),
            "meta": {"externalAccountRequired": ctx.config.require_eab},
        }
    )


def account_view(ctx: Ctx, row) -> dict:
    return {
        "status": row.status,
        "contact": row.contact,
        "orders": ctx.link("acct", row.id, "orders"),
        "createdAt": row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _contacts(payload: dict) -> list[str]:
    contact = payload.get("contact", [])
    if not isinstance(contact, list) or len(contact) > MAX_CONTACTS:
        raise AcmeError("malformed", "contact: a list of mailto: URLs")
    for item in contact:
        if not isinstance(item, str) or not _MAILTO.match(item):
            raise AcmeError("invalidContact", "contact: only mailto:NAME@DOMAIN URLs are accepted", status=400)
    return contact


def new_account(ctx: Ctx) -> Reply:
    signed = ctx.signed(use_jwk=True)
    payload = signed.json()
    assert ctx.caller is not None
    key = ctx.caller.key
    thumb = jose.thumbprint(key)
    with ctx.state.transaction(serialized=True) as tx:
        existing = tx.acme.account_by_thumbprint(thumb)
        if existing is not None:
            if existing.profile != ctx.profile:
                raise AcmeError("unauthorized", "this key holds an account in another directory")
            if existing.status != "valid":
                raise AcmeError("unauthorized", f"the account of this key is {existing.status}")
            return Reply(account_view(ctx, existing), 200, {"Location": ctx.link("acct", existing.id)})
        if payload.get("onlyReturnExisting") is True:
            raise AcmeError("accountDoesNotExist", "no account holds this key")
        contact = _contacts(payload)
        binding = payload.get("externalAccountBinding")
        if binding is None and ctx.config.require_eab:
            raise AcmeError("externalAccountRequired", "this directory requires an External Account Binding")
        eab = _check_binding(ctx, tx, binding, key) if binding is not None else None
        row = tx.acme.add_account(
            profile=ctx.profile,
            thumbprint=thumb,
            jwk=jose.public_jwk(key),
            contact=contact,
            eab_kid=eab.kid if eab is not None else None,
            now=ctx.now,
        )
        if eab is not None:
            eab.account_id = row.id
        audit(ctx, tx, "acme.account", actor=f"acme:{row.id}", detail={"eab_kid": row.eab_kid})
        return Reply(account_view(ctx, row), 201, {"Location": ctx.link("acct", row.id)})


def _check_binding(ctx: Ctx, tx: Transaction, binding: object, key) -> AcmeEabKey:
    """RFC 8555 7.3.4: a JWS over the account's key, MACed with the EAB key named by its kid."""
    inner = jose.parse(binding if isinstance(binding, dict) else b"")
    header = inner.protected
    if header.get("url") != ctx.url or "nonce" in header or not isinstance(header.get("kid"), str):
        raise AcmeError("malformed", "externalAccountBinding: needs kid and this url, and no nonce")
    try:
        bound_key = jose.load_jwk(inner.json())
    except AcmeError:
        raise AcmeError("malformed", "externalAccountBinding: the payload must be the account's JWK") from None
    if jose.thumbprint(bound_key) != jose.thumbprint(key):
        raise AcmeError("unauthorized", "externalAccountBinding: binds another key")
    found = tx.acme.eab(header["kid"])
    if found is None or found[0].profile != ctx.profile:
        raise AcmeError("unauthorized", "externalAccountBinding: unknown key id")
    row, mac_key = found
    jose.verify_mac(inner, mac_key)
    if row.account_id is not None:
        raise AcmeError("unauthorized", "externalAccountBinding: this key id is already bound to an account")
    return row


def account(ctx: Ctx) -> Reply:
    ctx.signed()
    account_id = ctx.request.path_params["id"]
    if account_id != ctx.account():
        raise AcmeError("unauthorized", "the kid does not name this account")
    assert ctx.jws is not None
    payload = {} if ctx.jws.post_as_get else ctx.jws.json()
    with ctx.state.transaction(serialized=True) as tx:
        row = tx.acme.account(account_id)
        assert row is not None
        if "contact" in payload:
            row.contact = _contacts(payload)
        status = payload.get("status")
        if status is not None:
            if status != "deactivated":
                raise AcmeError("malformed", 'status: only "deactivated" may be asked for')
            row.status = "deactivated"
            audit(ctx, tx, "acme.deactivate")
        return Reply(account_view(ctx, row), 200, {"Location": ctx.link("acct", row.id)})


def account_orders(ctx: Ctx) -> Reply:
    ctx.signed()
    if ctx.request.path_params["id"] != ctx.account():
        raise AcmeError("unauthorized", "the kid does not name this account")
    with ctx.state.transaction() as tx:
        orders = [ctx.link("order", o.id) for o in tx.acme.orders_of(ctx.account())]
    return Reply({"orders": orders})


def key_change(ctx: Ctx) -> Reply:
    """RFC 8555 7.3.5: the outer JWS by the account's key, the inner one by the new key."""
    outer = ctx.signed()
    inner = jose.parse(outer.json())
    jose.check_header(inner, ctx.url, use_jwk=True)
    if "nonce" in inner.protected:
        raise AcmeError("malformed", "keyChange: the inner JWS carries no nonce")
    new_key = jose.load_jwk(inner.jwk)
    jose.verify(inner, new_key)
    payload = inner.json()
    if not isinstance(payload.get("account"), str) or ctx.account_id_from(payload["account"]) != ctx.account():
        raise AcmeError("malformed", "keyChange: account must be the URL of the signing account")
    with ctx.state.transaction(serialized=True) as tx:
        row = tx.acme.account(ctx.account())
        assert row is not None
        try:
            old = jose.thumbprint(jose.load_jwk(payload.get("oldKey")))
        except AcmeError:
            raise AcmeError("malformed", "keyChange: oldKey must be the account's current key") from None
        if old != row.thumbprint:
            raise AcmeError("malformed", "keyChange: oldKey is not the account's current key")
        new_thumb = jose.thumbprint(new_key)
        taken = tx.acme.account_by_thumbprint(new_thumb)
        if taken is not None:
            raise AcmeError("malformed", "keyChange: the new key holds an account already", status=409)
        row.jwk, row.thumbprint = jose.public_jwk(new_key), new_thumb
        audit(ctx, tx, "acme.keychange")
        return Reply(account_view(ctx, row), 200, {"Location": ctx.link("acct", row.id)})
