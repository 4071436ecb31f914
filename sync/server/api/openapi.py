"""The OpenAPI 3.1 document of the REST API (GET /openapi.json): the schemas come from the
pydantic models that validate and build the bodies, the paths from the table below, so the
document cannot drift from what the server checks. Every response is listed, problems included."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from sync.config_server import TOKEN_SCOPES
from sync.server.api import models
from sync.server.api.http import MAX_BODY
from sync.server.problems import PROBLEM

REF = "#/components/schemas/{model}"
PEM_CHAIN = "application/pem-certificate-chain"

# (method, path, scope, operationId, summary, request model, success status, response model)
OPERATIONS: list[tuple[str, str, str, str, str, type | None, int, type | str]] = [
    (
        "get",
        "/api/v1/certificates",
        "read",
        "listCertificates",
        "Certificates of the token's profile (newest version of each), by name.",
        None,
        200,
        models.CertificateList,
    ),
    (
        "post",
        "/api/v1/certificates",
        "issue",
        "issueCertificate",
        "Issue a certificate with a key certsync makes; the key is in this response only.",
        models.IssueRequest,
        201,
        models.Issued,
    ),
    (
        "get",
        "/api/v1/certificates/{name}",
        "read",
        "getCertificate",
        "The current version's facts and every version.",
        None,
        200,
        models.CertificateDetail,
    ),
    (
        "get",
        "/api/v1/certificates/{name}/chain",
        "read",
        "getChain",
        "PEM chain of the current version: leaf then intermediates (never a key).",
        None,
        200,
        PEM_CHAIN,
    ),
    (
        "post",
        "/api/v1/certificates/{name}/renew",
        "renew",
        "renewCertificate",
        "Renew now: a new CSR for a CSR enrollment, reuse_key for a certificate certsync holds the key of.",
        models.RenewRequest,
        200,
        models.Renewed,
    ),
    (
        "post",
        "/api/v1/certificates/{name}/revoke",
        "revoke",
        "revokeCertificate",
        "Revoke the active version (or serial) and publish a new CRL.",
        models.RevokeRequest,
        200,
        models.Revoked,
    ),
    (
        "post",
        "/api/v1/certificates/{name}/deployments",
        "renew",
        "reportDeployment",
        "Report what an agent did with a version on its host (deployed, failed, rolled-back); audited.",
        models.DeploymentReport,
        200,
        models.Deployment,
    ),
    (
        "post",
        "/api/v1/sign",
        "sign",
        "signCsr",
        "Enroll a PKCS#10 CSR, as `certsync sign`.",
        models.SignRequest,
        201,
        models.Enrolled,
    ),
]

_PROBLEMS = {
    400: "The content is refused: a CSR that does not parse, names that no certificate can carry, "
    "a serial that is not a version of the certificate.",
    401: "No usable token (missing, unknown, revoked or expired).",
    403: "The token lacks the scope, or the profile's policy refuses the request.",
    404: "No such certificate among the token's profile's.",
    409: "The certificate's state refuses it (already revoked, renewal failed).",
    413: f"Body over {MAX_BODY} bytes.",
    415: "The body is not application/json.",
    422: "The request breaks the schema; `errors` names each field.",
    429: "Rate limit exceeded; see Retry-After.",
    503: "The store is busy (a run holds the lock) or unavailable; see Retry-After.",
}


def _retry_after() -> dict:
    return {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}}


def _problem(status: int) -> dict:
    response: dict[str, Any] = {
        "description": _PROBLEMS[status],
        "content": {PROBLEM: {"schema": {"$ref": REF.format(model="Problem")}}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"description": 'Bearer realm="certsync"', "schema": {"type": "string"}}
        }
    if status in (429, 503):
        response["headers"] = _retry_after()
    return response


def _success(status: int, body: type | str) -> dict:
    if isinstance(body, str):
        return {"description": "PEM certificates.", "content": {body: {"schema": {"type": "string"}}}}
    response: dict[str, Any] = {
        "description": (body.__doc__ or body.__name__).strip().splitlines()[0],
        "content": {"application/json": {"schema": {"$ref": REF.format(model=body.__name__)}}},
    }
    if status == 201:
        response["headers"] = {"Location": {"description": "The certificate's URL.", "schema": {"type": "string"}}}
    return response


def _parameters(path: str, method: str) -> list[dict]:
    params = []
    if "{name}" in path:
        params.append(
            {
                "name": "name",
                "in": "path",
                "required": True,
                "description": "Store name.",
                "schema": {"type": "string", "pattern": models.NAME_PATTERN},
            }
        )
    if path == "/api/v1/certificates" and method == "get":
        schema = models.ListQuery.model_json_schema()
        for field, prop in schema["properties"].items():
            prop = {k: v for k, v in prop.items() if k not in ("title", "default")}
            if "anyOf" in prop:  # optional: the parameter is simply left out
                prop = next(p for p in prop.pop("anyOf") if p.get("type") != "null") | prop
            params.append(
                {
                    "name": field,
                    "in": "query",
                    "required": False,
                    "schema": prop,
                    "description": {
                        "expiring_within": "Only certificates ending within this duration, e.g. 30d.",
                        "state": "Only this state.",
                        "limit": "Page size.",
                        "cursor": "next_cursor of the previous page.",
                    }[field],
                }
            )
    return params


def _operation(
    method: str, path: str, scope: str, op_id: str, summary: str, request: type | None, status: int, body: type | str
) -> dict:
    codes = [401, 403, 429, 503]
    if "{name}" in path:
        codes.append(404)
    if method == "get" and path == "/api/v1/certificates":
        codes.append(422)
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": ["certificates"],
        "description": f"Scope: `{scope}` ({TOKEN_SCOPES[scope]}).",
        "security": [{"bearer": [scope]}],
        "parameters": _parameters(path, method),
        "responses": {str(status): _success(status, body)},
    }
    if request is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=request.__name__)}}},
        }
        codes += [400, 403, 409, 413, 415, 422]
    for code in sorted(set(codes)):
        op["responses"][str(code)] = _problem(code)
    return op


def document(server_url: str | None = None) -> dict:
    _, schemas = models_json_schema(
        [(m, "validation") for m in models.REQUESTS] + [(m, "serialization") for m in models.RESPONSES],
        ref_template=REF,
    )
    paths: dict[str, dict] = {}
    for operation in OPERATIONS:
        method, path = operation[:2]
        paths.setdefault(path, {})[method] = _operation(*operation)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "certsync REST API",
            "version": "1",
            "description": "Issue, sign, renew, revoke and read certificates of one profile (the token's). "
            "Errors are RFC 9457 problem documents.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (`certsync token create`)."}
            },
        },
        "security": [{"bearer": []}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
