"""Keeps other web sites out of a server that listens on this machine only.

Listening on 127.0.0.1 keeps other machines out, not other web sites: a page the user visits can POST to
http://127.0.0.1:8000 through the user's browser (it cannot read the answer, but the machine does the work),
and a DNS-rebinding page can even read answers under its own host name. So the Host header must name this
machine (unless `--host` opened the server to a network), and a request that changes state and carries an
Origin must come from this server's own page. Tools like curl send no Origin and are unaffected. Every
answer also carries headers that keep the page self-contained: no script, style or image from elsewhere.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def allowed_hosts_for(host: str) -> frozenset[str] | None:
    """Host header names to accept when listening on `host`; None (any) for a wildcard address like 0.0.0.0,
    whose names on the network cannot be known."""
    name = host.strip().strip("[]").lower()
    return None if name in WILDCARD_ADDRESSES else LOOPBACK_NAMES | {name}


def _host_name(value: str) -> str | None:
    try:
        return urlsplit(f"//{value}").hostname
    except ValueError:
        return None


class LocalGuard:
    """ASGI middleware: the Host and Origin checks above, and the security headers on every answer."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str] | None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    def _refusal(self, method: str, headers: Headers) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.allowed_hosts is not None and _host_name(host) not in self.allowed_hosts:
            return 400, (f"host '{host[:100]}' is not this server's name; open http://127.0.0.1:<port>/ "
                         "(or start dim serve with --host to listen under other names)")
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return 403, (f"cross-origin request from '{origin[:100]}' refused; use this server's own page, "
                         "or a tool like curl")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope["method"], Headers(scope=scope))
        if refusal is not None:
            status, message = refusal
            await JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
