"""The agent's calls to `certsync serve`'s REST API (docs/server-api.md), over HTTPS verified
against the configured CA bundle.

Failures split in two: `Unreachable` (no connection, a timeout, 429, 5xx: try again later, with
backoff; `retry_after` when the server said how long) and `Refused` (any other 4xx: the request
itself is wrong, retrying the same one will not help). Messages carry the problem's one-line
detail, never the token.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sync.errors import CertsyncError

API = "/api/v1"


class Unreachable(CertsyncError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(CertsyncError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Enrollment:
    serial: str
    version: int
    certificate_pem: str
    chain_pem: str  # leaf, then intermediates


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx becomes an HTTPError (Refused) instead of a request carrying the token elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Client:
    def __init__(self, server: str, token: str, *, ca_bundle: Path | None, timeout: float = 30.0) -> None:
        self.server, self._token, self.timeout = server.rstrip("/"), token, timeout
        self._ssl = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
        # no redirects: urllib would follow one with the Authorization header, to any host or to http
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self._ssl), _NoRedirect)

    # -- the endpoints ---------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        try:
            self._call("GET", f"{API}/certificates/{quote(name)}")
        except Refused as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def sign(self, name: str, csr_pem: str) -> Enrollment:
        return _enrollment(self._call("POST", f"{API}/sign", {"csr": csr_pem, "name": name}))

    def renew(self, name: str, csr_pem: str) -> Enrollment:
        return _enrollment(self._call("POST", f"{API}/certificates/{quote(name)}/renew", {"csr": csr_pem}))

    def report(self, name: str, serial: str, host: str, outcome: str, detail: str | None = None) -> dict:
        body = {"serial": serial, "host": host, "outcome": outcome}
        if detail:
            body["detail"] = detail[:500]
        return self._call("POST", f"{API}/certificates/{quote(name)}/deployments", body)

    # -- HTTP ------------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        # the server URL is http(s) only (AgentConfig checks its scheme)
        request = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)  # noqa: S310
        where = f"{method} {self.server}{path}"
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise _http_error(where, exc) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"{where}: {' '.join(str(reason).split()) or exc.__class__.__name__}") from None


def _http_error(where: str, exc: urllib.error.HTTPError) -> CertsyncError:
    try:
        detail = json.loads(exc.read()).get("detail") or exc.reason
    except (ValueError, AttributeError, OSError):
        detail = exc.reason
    message = f"{where}: {exc.code} {' '.join(str(detail).split())}"
    if exc.code == 429 or exc.code >= 500:
        retry = exc.headers.get("Retry-After", "") if exc.headers else ""
        return Unreachable(message, float(retry) if retry.isdigit() else None)
    return Refused(message, exc.code)


def _enrollment(reply: dict) -> Enrollment:
    try:
        facts = reply["certificate"]
        return Enrollment(
            serial=facts["serial"],
            version=facts["version"],
            certificate_pem=reply["certificate_pem"],
            chain_pem=reply["chain_pem"],
        )
    except (KeyError, TypeError):
        raise Unreachable("the server's reply lacks the certificate (not a certsync server?)") from None
