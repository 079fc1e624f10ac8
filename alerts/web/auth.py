"""Who may use the HTTP API: bearer tokens, read-only or read-write.

One check for every route (:func:`token_middleware`): ``GET``/``HEAD`` under
``/api/v1/`` needs a read token (``api.read_tokens``) or the write token
(``api.token``); any other method needs the write token. The OpenAPI
document and the console's static files are public (the console asks the
officer for a token and sends it with each call). Tokens are compared in
constant time; without a configured token the requests it would allow are
refused. Refusals are ``401`` (no or an unknown token) or ``403`` (a read
token on a write), and never echo the token given.
"""

from __future__ import annotations

import hmac
from typing import Awaitable, Callable, Literal

from aiohttp import web

from alerts.config import ApiConfig

__all__ = ["API_PREFIX", "PUBLIC_PATHS", "TokenAuth", "token_middleware"]

API_PREFIX = "/api/v1/"
#: API paths anyone may read
PUBLIC_PATHS = frozenset({"/api/v1/openapi.json"})

Access = Literal["read", "write"]
Refuse = Callable[[int, str], web.Response]


class TokenAuth:
    """The tokens of an :class:`ApiConfig`, and the check of a request against them."""

    def __init__(self, api: ApiConfig) -> None:
        self._write = api.token.get_secret_value().encode() if api.token else None
        self._read = [t.get_secret_value().encode() for t in api.read_tokens]

    @staticmethod
    def _given(request: web.Request) -> bytes:
        header = request.headers.get("Authorization", "")
        return header[7:].strip().encode() if header.lower().startswith("bearer ") else b""

    @staticmethod
    def _matches(given: bytes, tokens: list[bytes]) -> bool:
        # compare against every token, so the time taken does not tell which one (or none) matched
        found = False
        for token in tokens:
            found |= hmac.compare_digest(given, token)
        return found and bool(given)

    def refusal(self, request: web.Request, access: Access) -> tuple[int, str] | None:
        """``(status, message)`` when ``request`` may not have ``access``, else None."""
        given = self._given(request)
        write = [self._write] if self._write else []
        if access == "write":
            if not write:
                return 401, "write actions are disabled: no api.token is configured"
            if self._matches(given, write):
                return None
            if self._matches(given, self._read):
                return 403, "this token may only read"
            return 401, "missing or wrong bearer token"
        if not write and not self._read:
            return 401, "reading is disabled: no api.token or api.read_tokens is configured"
        if self._matches(given, write + self._read):
            return None
        return 401, "missing or wrong bearer token"

    @staticmethod
    def access_of(request: web.Request) -> Access | None:
        """What ``request`` needs: None for public paths (console files, the OpenAPI document)."""
        if not request.path.startswith(API_PREFIX) or request.path in PUBLIC_PATHS:
            return None
        return "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"


def token_middleware(auth: TokenAuth, refuse: Refuse):
    """An aiohttp middleware refusing, with ``refuse(status, message)``, requests ``auth`` does not allow."""

    @web.middleware
    async def check_token(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        access = auth.access_of(request)
        if access is not None:
            refused = auth.refusal(request, access)
            if refused is not None:
                return refuse(*refused)
        return await handler(request)

    return check_token
