"""ACME (RFC 8555) for the profiles that opt in ([server.acme] profiles), each with its own
directory at /acme/PROFILE/directory. Accounts, orders, authorizations, challenges and nonces
live in the store, so replicas on one store serve one order together.

    jws.py          JWS parsing and verification (josepy keys, cryptography signatures)
    service.py      per-request checks, Replay-Nonce, errors as ACME problems
    accounts.py     directory, newAccount (+EAB), account update, keyChange
    orders.py       newOrder, authorizations, challenges, finalize, certificate
    revocation.py   revokeCert
    validation.py   http-01, dns-01
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from sync.errors import ConfigError
from sync.server.acme import accounts, orders, revocation
from sync.server.acme.service import endpoint, new_nonce_reply
from sync.server.state import ServerState


def routes(state: ServerState) -> list[BaseRoute]:
    unknown = sorted(set(state.server.acme.profiles) - set(state.config.profile))
    if unknown:  # at start, not as a 404 nobody understands
        raise ConfigError(
            f"server.acme.profiles: unknown profile {unknown[0]!r} (defined: {', '.join(sorted(state.config.profile))})"
        )

    def post(path: str, handler) -> Route:
        return Route("/acme/{profile}/" + path, endpoint(state, handler), methods=["POST"])

    return [
        Route("/acme/{profile}/directory", endpoint(state, accounts.directory), methods=["GET"]),
        Route("/acme/{profile}/new-nonce", endpoint(state, new_nonce_reply), methods=["GET", "HEAD"]),
        post("new-account", accounts.new_account),
        post("acct/{id}", accounts.account),
        post("acct/{id}/orders", accounts.account_orders),
        post("key-change", accounts.key_change),
        post("new-order", orders.new_order),
        post("order/{id}", orders.get_order),
        post("order/{id}/finalize", orders.finalize),
        post("authz/{id}", orders.get_authz),
        post("chall/{id}", orders.challenge),
        post("cert/{id}", orders.certificate),
        post("revoke-cert", revocation.revoke_cert),
    ]
