"""The duty officers' web console: static files served by the dispatcher's API app.

The console (``index.html``, ``console.js``, ``console.css`` in this
directory; plain ES2020, no build step, nothing loaded from elsewhere) talks
only to the JSON API under ``/api/v1/``. :func:`add_console_routes` serves it:

* ``GET /`` redirects to ``/console/``;
* ``GET /console/`` is ``index.html``; ``GET /console/<file>`` the other files,
  each with its content type and :data:`CONSOLE_HEADERS` (a strict
  Content-Security-Policy: scripts, styles and requests from this origin only,
  no inline code, no framing, no form submissions).

The files are read once when the app is built; an unknown name is a 404.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

__all__ = ["CONSOLE_DIR", "CONSOLE_CSP", "CONSOLE_HEADERS", "CONTENT_TYPES", "console_files",
           "add_console_routes"]

CONSOLE_DIR = Path(__file__).resolve().parent

CONSOLE_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

CONSOLE_HEADERS = {
    "Content-Security-Policy": CONSOLE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

#: served extensions and their content types (anything else in the directory is not served)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def console_files(directory: Path = CONSOLE_DIR) -> dict[str, tuple[bytes, str]]:
    """``{file name: (content, content type)}`` for the servable files in ``directory``."""
    return {path.name: (path.read_bytes(), CONTENT_TYPES[path.suffix])
            for path in sorted(directory.iterdir())
            if path.is_file() and path.suffix in CONTENT_TYPES}


def add_console_routes(app: web.Application, directory: Path = CONSOLE_DIR) -> None:
    """Serve the console from ``directory`` on ``app`` (``/`` and ``/console/...``)."""
    files = console_files(directory)

    async def root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/console/")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        if name not in files:
            raise web.HTTPNotFound(reason=f"no console file {name[:64]!r}")
        body, content_type = files[name]
        response = web.Response(body=body, headers=CONSOLE_HEADERS)
        response.headers["Content-Type"] = content_type
        return response

    app.router.add_get("/", root)
    app.router.add_get("/console", root)
    app.router.add_get("/console/", static)
    app.router.add_get("/console/{name}", static)
