"""The REST API under /api/v1/ (docs/server-api.md) and its OpenAPI 3.1 document at /openapi.json.

    GET  /api/v1/certificates                    read    list (?expiring_within=30d&state=&limit=&cursor=)
    POST /api/v1/certificates                    issue   CSR-less issuance: the key is returned once
    GET  /api/v1/certificates/{name}             read    facts and versions
    GET  /api/v1/certificates/{name}/chain       read    PEM chain
    POST /api/v1/certificates/{name}/renew       renew   new CSR (CSR enrollments) or reuse_key (held keys)
    POST /api/v1/certificates/{name}/revoke      revoke
    POST /api/v1/certificates/{name}/deployments renew   an agent's report: deployed, failed, rolled-back
    POST /api/v1/sign                            sign    a CSR, as `certsync sign`

Bearer tokens (`certsync token create`), each bound to one profile and a set of scopes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from sync.server.api import handlers, openapi
from sync.server.api.http import endpoint
from sync.server.state import ServerState

_HANDLERS = {
    "listCertificates": handlers.list_certificates,
    "issueCertificate": handlers.issue,
    "getCertificate": handlers.get_certificate,
    "getChain": handlers.get_chain,
    "renewCertificate": handlers.renew,
    "revokeCertificate": handlers.revoke,
    "signCsr": handlers.sign,
    "reportDeployment": handlers.report_deployment,
}


def routes(state: ServerState) -> list[BaseRoute]:
    """One Route per path of the OpenAPI table (several methods share a path)."""
    by_path: dict[str, dict[str, object]] = {}
    for method, path, scope, op_id, *_ in openapi.OPERATIONS:
        by_path.setdefault(path, {})[method.upper()] = endpoint(state, scope, _HANDLERS[op_id](state))
    found: list[BaseRoute] = [
        Route(path, _dispatch(methods), methods=list(methods)) for path, methods in by_path.items()
    ]
    document = openapi.document(state.server.public_url)

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    return [*found, Route("/openapi.json", openapi_json, methods=["GET"])]


def _dispatch(methods: dict):
    async def run(request: Request):
        return await methods[request.method if request.method != "HEAD" else "GET"](request)

    return run
