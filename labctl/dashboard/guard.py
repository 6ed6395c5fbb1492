"""ASGI middleware in front of the dashboard: oversized bodies refused before anything reads them.

A request that declares more than ``limit`` bytes, or streams a body without declaring its
length, gets 413 and never reaches a route: nothing is parsed, nothing is written. The
dashboard's forms are a few hundred bytes.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 16 * 1024

#: sent with every response: no framing, no sniffing, no referrer, scripts only from the app
HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"cache-control", b"no-store"),
]


class Guard:
    """Refuse oversized or unmeasured bodies with 413; add the security headers."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if length is not None:
            try:
                too_big = too_big or int(length) > self.limit
            except ValueError:
                too_big = True
        if too_big:
            response = PlainTextResponse(f"Request body over {self.limit} bytes", 413)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
