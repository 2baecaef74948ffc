"""The hub's web page (issue 14, item 3): server-rendered HTML with inline
SVG charts, no build step, nothing fetched from elsewhere.

    /                 the fleet (hub/web/fleet.py)
    /hosts/{host}     one host: charts, checks, events (hub/web/host.py)
    /alerts           active alerts, then history (hub/web/alerts.py)
    /checks           every check's availability (hub/web/checks.py)
    /events           search the events (hub/web/events.py)
    /login, /logout   the session cookie (hub/web/session.py)
    /static/...       our CSS and a small script for sorting and filtering

Who may see them is the read API's rule (hub/web/session.py). A page is
built in a read thread (hub/read.py), from the read thread's own reader,
HTML and all: the event loop only sends it. A bad query parameter gets a
400 page naming it; an unknown host a 404. The page modules are imported
on the first request, so an idle hub that nobody browses does not carry
them (the hub's memory target, docs/operations.md).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import structlog
from aiohttp import web

from hub.auth import local
from hub.read import BadQuery, Read
from hub.store import BadCursor, Reader
from hub.web.render import View

log = structlog.get_logger()

STATIC = Path(__file__).parent / "static"
MAX_LOGIN_BODY = 4096  # bytes: a token and a path
HEADERS = {
    # our own files only; nothing inline runs, even if something slipped through escaping
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
Page = Callable[[Reader, web.Request, bool], "str | None"]


class Web:
    def __init__(self, read: Read, target: Callable[[], float], secure: bool = False) -> None:
        self.read = read  # its read_token follows reloads
        self.target = target  # [hub.reports] availability_target, as running
        self.secure = secure  # HTTPS: the cookie is Secure
        self.login_failures = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._page("fleet"))
        app.router.add_get("/hosts/{host}", self._page("host"))
        app.router.add_get("/alerts", self._page("alerts"))
        app.router.add_get("/checks", self._page("checks"))
        app.router.add_get("/events", self._page("events"))
        app.router.add_get("/login", self.login_form)
        app.router.add_post("/login", self.login)
        app.router.add_get("/logout", self.logout)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/static/{name}", self.static)

    # -- access ---------------------------------------------------------------

    def _denied(self, request: web.Request) -> web.StreamResponse | None:
        from hub.web import session

        token = self.read.read_token
        if token is None:
            if local(request):
                return None
            return _html(403, _frame(403, _NOT_LOCAL))
        if session.signed_in(request, token):
            return None
        if request.headers.get("Authorization"):  # a client with a wrong token
            return _html(401, _frame(401, "This page needs the read token."))
        return _see("/login?" + urlencode({"next": request.path_qs}))

    # -- pages ----------------------------------------------------------------

    def _page(self, name: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            denied = self._denied(request)
            if denied is not None:
                return denied
            logout = self.read.read_token is not None and "Authorization" not in request.headers
            module = importlib.import_module(f"hub.web.{name}")
            query, status_of, target = dict(request.query), self.read.status, self.target()
            host = request.match_info.get("host")

            def build(reader: Reader) -> str | None:
                view = View(query, time.time(), logout, status_of, target, host)
                return module.render(reader, view)  # type: ignore[no-any-return]

            try:
                text = await self.read.query(build)
            except (BadQuery, BadCursor) as exc:
                return _html(400, _frame(400, f"Bad request: {exc}", logout))
            if text is None:
                return _html(404, _frame(404, f"No host {host!r} has reported here.", logout))
            return _html(200, text)

        return handle

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if name.startswith(".") or "/" in name or path.suffix not in STATIC_TYPES:
            raise web.HTTPNotFound()
        try:
            body = path.read_bytes()  # a few kB, read from the page cache
        except OSError:
            raise web.HTTPNotFound() from None
        headers = {**HEADERS, "Cache-Control": "max-age=300"}
        return web.Response(body=body, content_type=STATIC_TYPES[path.suffix], headers=headers)

    # -- login ----------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if self.read.read_token is None:
            return _see("/")
        return _html(200, _login_page(_next(request.query.get("next", "/")), ""))

    async def login(self, request: web.Request) -> web.StreamResponse:
        from hub.web import session

        token = self.read.read_token
        if token is None:
            return _see("/")
        if (request.content_length or 0) > MAX_LOGIN_BODY:
            return _html(413, _frame(413, "The login form's body is too large."))
        body = await request.content.read(MAX_LOGIN_BODY + 1)
        if len(body) > MAX_LOGIN_BODY:
            return _html(413, _frame(413, "The login form's body is too large."))
        try:
            form = parse_qs(body.decode(), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            return _html(400, _login_page("/", "That form could not be read."))
        given = form.get("token", [""])[0]
        target = _next(form.get("next", ["/"])[0])
        if not given or not session.token_matches(given, token):
            self.login_failures += 1
            log.warning("web_login_failed", remote=request.remote, failures=self.login_failures)
            return _html(401, _login_page(target, "That is not the read token."))
        response = _see(target)
        response.set_cookie(
            session.COOKIE,
            session.cookie_value(token),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure,
        )
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        from hub.web import session

        response = _see("/login")
        response.del_cookie(session.COOKIE, path="/")
        return response


_NOT_LOCAL = (
    "This hub has no read token, so its pages are open only to a browser on the hub's own"
    " machine, asking for 127.0.0.1, [::1] or localhost, through no proxy. Set"
    " [hub] read_token_file to open them to others (docs/hub.md, \u201cThe web page\u201d)."
)


def _next(path: str) -> str:
    """Where to go after logging in: a path of this hub, nothing else."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 2000:
        return "/"
    if any(ord(c) < 0x20 or c == "\x7f" for c in path):  # browsers drop tabs: "/\t/x" is "//x"
        return "/"
    return path


def _frame(status: int, message: str, logout: bool = False) -> str:
    from hub.web.render import error_page

    return error_page(status, message, logout)


def _login_page(target: str, error: str) -> str:
    from hub.web.render import esc, page

    problem = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    form = (
        f'{problem}<form class="login" method="post" action="/login">'
        f'<input type="hidden" name="next" value="{esc(target)}">'
        '<label>Read token <input type="password" name="token" autocomplete="current-password"'
        " autofocus required></label> <button>Log in</button></form>"
        '<p class="note">The hub\u2019s read token (<code>[hub] read_token_file</code>).'
        " The browser keeps a session cookie derived from it, not the token.</p>"
    )
    return page("Log in", form)


def _html(status: int, text: str) -> web.Response:
    return web.Response(
        status=status, text=text, content_type="text/html", charset="utf-8", headers=HEADERS
    )


def _see(location: str) -> web.Response:
    """303 See Other: after a form, and to the login form."""
    return web.Response(status=303, headers={**HEADERS, "Location": location})
