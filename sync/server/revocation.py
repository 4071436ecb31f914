"""Revocation over HTTP: the CAs' CRLs (RFC 5280) and an OCSP responder (RFC 6960, with the GET
form of RFC 5019), answered from the store.

    GET  /crl/{ca}.crl                 DER CRL, application/pkix-crl; a new one when half its life is gone
    POST /ocsp/{ca}                    application/ocsp-request -> application/ocsp-response
    GET  /ocsp/{ca}/{base64 request}   the same, cacheable

A request OCSP cannot parse is answered malformedRequest, one for a CA this server does not
serve unauthorized (both as OCSP responses, HTTP 200, as clients expect).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync.ca import revoke as revocations
from sync.errors import CertsyncError
from sync.server import problems
from sync.server.state import ServerState

MAX_OCSP_REQUEST = 16 * 1024
CRL_TYPE = "application/pkix-crl"
OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"


def routes(state: ServerState) -> list[Route]:
    return [
        Route("/crl/{ca}.crl", crl_endpoint(state), methods=["GET", "HEAD"]),
        Route("/ocsp/{ca}", ocsp_post(state), methods=["POST"]),
        Route("/ocsp/{ca}/{request:path}", ocsp_get(state), methods=["GET"]),
    ]


# -- CRL -------------------------------------------------------------------------------------------------
def current_crl(state: ServerState, ca: str) -> x509.CertificateRevocationList:
    now = state.now
    with state.transaction() as tx:  # the usual case: a read, no lock, no key
        found = revocations.fresh_crl(state.config, tx, ca, now)
    if found is not None:
        return found
    with state.transaction(serialized=True) as tx:  # due: publish (one publisher at a time)
        return revocations.current_crl(state.config, tx, ca, now)


def crl_endpoint(state: ServerState):
    async def endpoint(request: Request) -> Response:
        ca = request.path_params["ca"]
        if ca not in state.config.ca:
            return problems.problem(404, f"no CA named {ca!r}", kind="not-found")
        try:
            crl = await run_in_threadpool(current_crl, state, ca)
        except CertsyncError as exc:
            return problems.from_error(exc)
        der = crl.public_bytes(Encoding.DER)
        etag = '"' + hashlib.sha256(der).hexdigest()[:32] + '"'
        headers = {"ETag": etag, **_cache_headers(crl.last_update_utc, crl.next_update_utc, state.now)}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(b"" if request.method == "HEAD" else der, media_type=CRL_TYPE, headers=headers)

    return endpoint


def _cache_headers(this_update: datetime, next_update: datetime | None, now: datetime) -> dict[str, str]:
    """Cache until the next CRL may be published (half its life), never past nextUpdate (RFC 5019 6.2)."""
    headers = {"Last-Modified": format_datetime(this_update, usegmt=True)}
    if next_update is None:
        return {**headers, "Cache-Control": "no-cache"}
    refresh = this_update + (next_update - this_update) / 2
    max_age = max(0, int((refresh - now).total_seconds()))
    return {
        **headers,
        "Expires": format_datetime(next_update, usegmt=True),
        "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
    }


# -- OCSP ------------------------------------------------------------------------------------------------
def answer(state: ServerState, ca: str, request_der: bytes) -> ocsp.OCSPResponse:
    if ca not in state.config.ca:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    responder = state.ocsp_responder(ca)
    with state.transaction() as tx:
        return revocations.ocsp_respond(
            state.config,
            tx,
            ca,
            request_der,
            state.now,
            responder=responder,
            lifetime=state.server.ocsp_response_lifetime,
        )


def _ocsp_http(response: ocsp.OCSPResponse, now: datetime, cacheable: bool) -> Response:
    if cacheable and response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL and not _has_nonce(response):
        headers = _cache_headers(response.this_update_utc, response.next_update_utc, now)
    else:
        headers = {"Cache-Control": "no-cache, no-store"}
    return Response(response.public_bytes(Encoding.DER), media_type=OCSP_RESPONSE, headers=headers)


def _has_nonce(response: ocsp.OCSPResponse) -> bool:
    try:
        response.extensions.get_extension_for_class(x509.OCSPNonce)
        return True
    except x509.ExtensionNotFound:
        return False


def _respond(state: ServerState, ca: str, der: bytes, *, cacheable: bool) -> Response:
    try:
        response = answer(state, ca, der)
    except CertsyncError:
        response = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)
    return _ocsp_http(response, state.now, cacheable)


def _malformed() -> Response:
    return Response(
        ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
            Encoding.DER
        ),
        media_type=OCSP_RESPONSE,
        headers={"Cache-Control": "no-cache"},
    )


def ocsp_post(state: ServerState):
    async def endpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_OCSP_REQUEST:
                return _malformed()
        return await run_in_threadpool(_respond, state, request.path_params["ca"], body, cacheable=False)

    return endpoint


def ocsp_get(state: ServerState):
    async def endpoint(request: Request) -> Response:
        encoded = unquote(request.path_params["request"])
        if len(encoded) > MAX_OCSP_REQUEST:
            return _malformed()
        try:
            der = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=False)
        except (binascii.Error, ValueError):
            return _malformed()
        return await run_in_threadpool(_respond, state, request.path_params["ca"], der, cacheable=True)

    return endpoint
