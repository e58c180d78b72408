"""The console's HTTP side (aiohttp): the page, its config, and short-lived tokens.

Routes:

* ``GET /``: the page (``index.html`` of the built bundle); ``GET /assets/...``: its script and
  style sheet;
* ``GET /config.json``: :func:`~.page_config.page_config` (no credentials in it);
* ``POST /token``: a JSON body (``{}``, ``{"secret": ...}`` or ``{"identity": ..., "password": ...}``)
  answered by :class:`~.access.TokenPolicy` with ``{"token", "identity", "livekit_url", "room",
  "ttl_s"}`` or ``{"error"}`` and status 401; after 5 refusals within a minute an address gets 429
  until the minute has passed;
* ``GET /healthz``: ``ok``.

Bound to a loopback address, requests whose ``Host`` is not a loopback name are refused (403):
a web page elsewhere cannot use DNS rebinding to reach the console through the user's browser.
A token request whose ``Origin`` is another site is refused (403) wherever the console is bound.
What counts as *local* for the token policy is decided here (loopback peer, loopback ``Host``,
no proxy header; see :mod:`.access`). Every answer, errors included, carries a
Content-Security-Policy that lets the page load only from its own origin and connect only to it
and to the LiveKit server.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
import time
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from aiohttp import web

from .access import Grant, TokenPolicy, is_loopback

__all__ = ['BUNDLE_FILES', 'ConsoleServer', 'content_security_policy', 'missing_bundle_files']

BUNDLE_FILES = ('index.html', 'console.js', 'console.css')
_PROXY_HEADERS = ('Forwarded', 'X-Forwarded-For', 'X-Real-IP', 'X-Forwarded-Host')
_MAX_BODY = 4096
# Refused token requests allowed per client address and minute before it is told to wait (429):
# guessing a 12-character secret at 5 tries a minute is hopeless; a typo costs nothing.
MAX_REFUSALS_PER_MINUTE = 5


def missing_bundle_files(root: Path) -> list[str]:
    """Files of the built page that are not in ``root`` (empty when it is complete)."""
    return [name for name in BUNDLE_FILES if not (Path(root) / name).is_file()]


def content_security_policy(livekit_url: str) -> str:
    """The page's CSP: its own origin, plus the LiveKit server (ws and the HTTP it validates with).

    LiveKit Cloud hands out per-region servers under the project's domain, so for a
    ``*.livekit.cloud`` URL that whole domain is allowed.
    """
    parts = urlsplit(livekit_url)
    host = parts.netloc or 'localhost'
    secure = parts.scheme in ('wss', 'https')
    ws, http = ('wss', 'https') if secure else ('ws', 'http')
    sources = [f'{ws}://{host}', f'{http}://{host}']
    if parts.hostname and parts.hostname.endswith('.livekit.cloud'):
        sources += ['wss://*.livekit.cloud', 'https://*.livekit.cloud']
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        f"media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self' {' '.join(sources)}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


def _host_name(host_header: str) -> str:
    """``Host`` without its port (``[::1]:8080`` -> ``::1``)."""
    if host_header.startswith('['):
        return host_header[1 : host_header.find(']')] if ']' in host_header else host_header
    return host_header.rsplit(':', 1)[0] if host_header.count(':') == 1 else host_header


class ConsoleServer:
    """Serves one console; ``start()`` binds (port 0: any free port, read back from ``port``)."""

    def __init__(
        self,
        web_root: Path,
        config: dict[str, Any],
        policy: TokenPolicy,
        address: str = '127.0.0.1',
        port: int = 8080,
        on_event: Optional[Callable[[str, str], None]] = None,
    ) -> None:
        self.web_root = Path(web_root)
        self.config = config
        self.policy = policy
        self.address = address
        self.port = port
        self._on_event = on_event or (lambda kind, detail: None)
        self._runner: Optional[web.AppRunner] = None
        self._loopback_only = is_loopback(address)
        self._refused: dict[str, deque[float]] = {}
        self.csp = content_security_policy(config['livekit_url'])
        app = web.Application(client_max_size=_MAX_BODY, middlewares=[self._guard])
        app.on_response_prepare.append(self._headers)
        app.router.add_get('/', self._index)
        app.router.add_get('/config.json', self._config)
        app.router.add_post('/token', self._token)
        app.router.add_get('/healthz', self._health)
        app.router.add_get('/assets/{name}', self._asset)
        self.app = app

    def bundle_missing(self) -> list[str]:
        """Files of the built page that are not in ``web_root`` (empty when it is complete)."""
        return missing_bundle_files(self.web_root)

    @property
    def url(self) -> str:
        host = {'0.0.0.0': '127.0.0.1', '': '127.0.0.1', '::': '::1'}.get(self.address, self.address)
        host = f'[{host}]' if ':' in host else host
        return f'http://{host}:{self.port}/'

    async def start(self) -> int:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- middleware and handlers -----------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        if self._loopback_only and not is_loopback(_host_name(request.host or '')):
            self._on_event('refused-host', request.host or '')
            return web.json_response({'error': 'this console answers only to localhost names'}, status=403)
        return await handler(request)

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """Security headers on every answer, errors and static files included."""
        response.headers['Content-Security-Policy'] = self.csp
        response.headers['X-Content-Type-Options'] = 'nosniff'
        response.headers['Referrer-Policy'] = 'no-referrer'
        response.headers.setdefault('Cache-Control', 'no-cache')

    @staticmethod
    def is_local(request: web.Request) -> bool:
        """On this machine, directly: loopback peer, a loopback name in ``Host``, no proxy in between."""
        return (
            is_loopback(request.remote or '')
            and is_loopback(_host_name(request.host or ''))
            and not any(h in request.headers for h in _PROXY_HEADERS)
        )

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return self._file('index.html')

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info['name']
        if name not in BUNDLE_FILES[1:] and name != 'console.js.map':
            raise web.HTTPNotFound()
        return self._file(name)

    def _file(self, name: str) -> web.StreamResponse:
        path = self.web_root / name
        if not path.is_file():
            return web.Response(
                status=503,
                text=f'the console page is not built ({path} is missing): run `make setup`, '
                'or `npm ci && npm run build` in portal_bridge/web/console, then rebuild the package',
            )
        return web.FileResponse(path)

    async def _config(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.config)

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text='ok')

    async def _token(self, request: web.Request) -> web.StreamResponse:
        remote = request.remote or ''
        origin = request.headers.get('Origin')
        if origin is not None and urlsplit(origin).netloc != request.host:
            self._on_event('cross-site', f'{remote}: Origin {origin[:100]}')
            return web.json_response({'error': 'token requests come from the console page itself'}, status=403)
        try:
            body = await request.json() if request.can_read_body else {}
        except (ValueError, RecursionError, web.HTTPRequestEntityTooLarge):  # ValueError: bad JSON or UTF-8
            body = None
        if not isinstance(body, dict):
            self._on_event('bad-token-request', remote)
            return web.json_response({'error': 'the body must be a JSON object'}, status=400)
        now = time.monotonic()
        recent = self._refused.get(remote)
        while recent and now - recent[0] > 60.0:
            recent.popleft()
        if recent is not None and not recent:
            del self._refused[remote]
        elif recent is not None and len(recent) >= MAX_REFUSALS_PER_MINUTE:
            self._on_event('token-throttled', remote)
            return web.json_response(
                {'error': 'too many refused requests from this address: wait a minute'}, status=429
            )
        decision = self.policy.decide(self.is_local(request), body)
        if not isinstance(decision, Grant):
            self._refused.setdefault(remote, deque()).append(now)
            self._on_event('token-refused', f'{remote}: {decision.reason}')
            return web.json_response({'error': decision.reason}, status=decision.status)
        self._on_event('token', f'{decision.identity} for {remote}')
        response = web.json_response(
            {
                'token': decision.token,
                'identity': decision.identity,
                'ttl_s': decision.ttl_s,
                'livekit_url': self.config['livekit_url'],
                'room': self.config['room'],
            }
        )
        response.headers['Cache-Control'] = 'no-store'
        return response
