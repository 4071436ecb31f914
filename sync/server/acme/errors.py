"""ACME problem documents (RFC 8555 6.7): urn:ietf:params:acme:error:TYPE, application/problem+json."""

from __future__ import annotations

from starlette.responses import JSONResponse

from sync.server import problems

NS = "urn:ietf:params:acme:error:"

# RFC 8555 6.7 types this server sends, and their HTTP status
STATUS = {
    "accountDoesNotExist": 400,
    "alreadyRevoked": 400,
    "badCSR": 400,
    "badNonce": 400,
    "badPublicKey": 400,
    "badRevocationReason": 400,
    "badSignatureAlgorithm": 400,
    "connection": 400,
    "dns": 400,
    "externalAccountRequired": 403,
    "incorrectResponse": 403,
    "invalidContact": 400,
    "malformed": 400,
    "orderNotReady": 403,
    "rejectedIdentifier": 400,
    "serverInternal": 500,
    "unauthorized": 403,
    "unsupportedIdentifier": 400,
    "userActionRequired": 403,
}


class AcmeError(Exception):
    def __init__(self, kind: str, detail: str, *, status: int | None = None, **extra) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status or STATUS.get(kind, 400)
        self.extra = extra

    def document(self) -> dict:
        """The problem as stored on an order or challenge (its `error` field)."""
        return {"type": NS + self.kind, "detail": self.detail, "status": self.status}

    def response(self, headers: dict | None = None) -> JSONResponse:
        return problems.problem(self.status, self.detail, type_uri=NS + self.kind, headers=headers, **self.extra)
