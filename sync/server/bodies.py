"""Reading a request body under a limit: refused from its Content-Length when that says too much,
else as soon as the bytes received pass the limit (never read whole, then measured)."""

from __future__ import annotations

from starlette.requests import Request

from sync.errors import PayloadTooLarge


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
    return bytes(body)
