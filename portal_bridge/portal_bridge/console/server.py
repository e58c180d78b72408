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
Every answer carries a Content-Security-Policy that lets the page talk only to its own origin and
to the LiveKit server.
"""

from __future__ import annotations

from collections import deque
import json
import logging
from pathlib import Path
import time
from typing import Any, Callable, Optional

from aiohttp import web

from .access import Grant, TokenPolicy, is_loopback

__all__ = ['ConsoleServer', 'BUNDLE_FILES']

BUNDLE_FILES = ('index.html', 'console.js', 'console.css')
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self' ws: wss: http: https:; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_MAX_BODY = 4096
# Refused token requests allowed per client address and minute before it is told to wait (429):
# guessing a 12-character secret at 5 tries a minute is hopeless; a typo costs nothing.
MAX_REFUSALS_PER_MINUTE = 5

log = logging.getLogger(__name__)


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
        app = web.Application(client_max_size=_MAX_BODY, middlewares=[self._guard])
        app.router.add_get('/', self._index)
        app.router.add_get('/config.json', self._config)
        app.router.add_post('/token', self._token)
        app.router.add_get('/healthz', self._health)
        app.router.add_get('/assets/{name}', self._asset)
        self.app = app

    def bundle_missing(self) -> list[str]:
        """Files of the built page that are not in ``web_root`` (empty when it is complete)."""
        return [name for name in BUNDLE_FILES if not (self.web_root / name).is_file()]

    @property
    def url(self) -> str:
        host = '127.0.0.1' if self.address in ('0.0.0.0', '::', '') else self.address
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
        response = await handler(request)
        response.headers['Content-Security-Policy'] = _CSP
        response.headers['X-Content-Type-Options'] = 'nosniff'
        response.headers['Referrer-Policy'] = 'no-referrer'
        response.headers.setdefault('Cache-Control', 'no-cache')
        return response

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
        try:
            body = await request.json() if request.can_read_body else {}
        except (json.JSONDecodeError, UnicodeDecodeError, web.HTTPRequestEntityTooLarge):
            body = None
        if not isinstance(body, dict):
            self._on_event('bad-token-request', remote)
            return web.json_response({'error': 'the body must be a JSON object'}, status=400)
        recent = self._refused.setdefault(remote, deque())
        now = time.monotonic()
        while recent and now - recent[0] > 60.0:
            recent.popleft()
        if len(recent) >= MAX_REFUSALS_PER_MINUTE:
            self._on_event('token-throttled', remote)
            return web.json_response(
                {'error': 'too many refused requests from this address: wait a minute'}, status=429
            )
        decision = self.policy.decide(remote, body)
        if not isinstance(decision, Grant):
            recent.append(now)
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
