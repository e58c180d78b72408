"""The ``console`` node: serves the browser operator console of one Portal room.

It serves the page (built from ``web/console`` by ``make setup`` and installed into the package's
``share/``), the wire contract and keymap the page drives with, and short-lived LiveKit tokens
for the page's identity, minted here so the browser never holds the API secret. It binds to
127.0.0.1 unless told otherwise; any other address needs ``secret_file`` or ``logins_file`` (see
:mod:`portal_bridge.console.access`) and says so in one line at startup.

The page itself joins the room as a Portal operator; this node is not a participant. It has no
ROS topics besides ``/diagnostics`` (tokens given and refused).
"""

from __future__ import annotations

from collections import Counter
import os
from pathlib import Path
import threading
from typing import Any, Optional, Sequence

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from rclpy.node import Node

from ..console.access import AccessError, TokenPolicy, check_binding, file_is_private, read_logins, read_secret
from ..console.keymap import KeymapError, default_keymap, load_keymap
from ..console.page_config import page_config
from ..console.server import ConsoleServer
from ..portal import ContractError, WireContract
from ..portal.loop_thread import LoopThread
from ..ros.credentials import CredentialsError, load_credentials
from ..ros.diagnostics import OK, WARN, DiagnosticsPublisher
from ..ros.params import ParameterError, declare
from ..ros.ros_logging import route_python_logging
from .bridge_node import default_contract_path
from .node_main import run_node

__all__ = ['ConsoleNode', 'PARAMETERS', 'default_web_root', 'main']

# name, default, description, options (declared in this order, all read-only)
PARAMETERS: tuple[tuple[str, Any, str, dict[str, Any]], ...] = (
    ('livekit_url', 'ws://127.0.0.1:7880', 'LiveKit server URL the page connects to (as the browser reaches it).', {}),
    ('room', 'portal', 'LiveKit room of the Portal session.', {}),
    ('identity', 'console', 'Identity of the page in the room (without a login list); unique per room.', {}),
    ('robot_identity', '', "The robot's identity; empty: the first participant with the robot role.", {}),
    ('contract_file', '', "Wire contract (portal.yaml); empty: the package default. Must be the robot's.", {}),
    ('keymap_file', '', 'Keyboard/gamepad mapping (YAML, see config/console_keymap.yaml); empty: no driving.', {}),
    ('credentials_file', '', 'LiveKit api_key/api_secret (file or LIVEKIT_API_KEY/SECRET) to mint tokens.', {}),
    ('address', '127.0.0.1', 'Address to bind; anything but loopback needs secret_file or logins_file.', {}),
    ('port', 8080, 'TCP port (0: any free port, logged).', {'value_range': (0, 65535)}),
    ('token_ttl_s', 600, 'Lifetime of the tokens given to the page, in seconds.', {'value_range': (30, 86400)}),
    ('secret_file', '', 'File with a shared secret (>= 12 characters) other machines must give for a token.', {}),
    ('logins_file', '', 'YAML identity: password list; every token request then needs a login.', {}),
    ('web_root', '', 'Directory of the built page; empty: the installed share/portal_bridge/web/console.', {}),
)


def default_web_root() -> Path:
    """The installed bundle, else the source tree's build (a ``--symlink-install`` workspace)."""
    try:
        installed = Path(get_package_share_directory('portal_bridge')) / 'web' / 'console'
        if (installed / 'index.html').is_file():
            return installed
    except (PackageNotFoundError, ValueError):
        pass
    return Path(__file__).resolve().parents[2] / 'web' / 'console' / 'dist'


class ConsoleNode(Node):
    """Serves the console page and its tokens; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('console', **kwargs)
        self._restore_logging = route_python_logging(self)
        values = {}
        for name, default, description, options in PARAMETERS:
            try:
                values[name] = declare(self, name, default, description, **options)
            except ParameterError as exc:
                raise SystemExit(self._fatal(str(exc))) from None
        self.params = values
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        for name in ('identity', 'room', 'livekit_url'):
            if not values[name].strip():
                raise SystemExit(self._fatal(f'{name} must not be empty'))
        if values['identity'] == values['robot_identity']:
            raise SystemExit(self._fatal(f"identity '{values['identity']}' is the robot's: the page would replace it"))
        contract_file = values['contract_file'] or default_contract_path()
        try:
            contract = WireContract.from_yaml_file(contract_file)
            keymap = (
                load_keymap(values['keymap_file'], [f.name for f in contract.action], [f.name for f in contract.state])
                if values['keymap_file']
                else default_keymap()
            )
            secret = read_secret(values['secret_file']) if values['secret_file'] else None
            logins = read_logins(values['logins_file']) if values['logins_file'] else None
            access_line = check_binding(values['address'], secret, logins)
            creds = load_credentials(values['credentials_file'])
        except (ContractError, KeymapError, AccessError, CredentialsError) as exc:
            prefix = f'wire contract {contract_file}: ' if isinstance(exc, ContractError) else ''
            raise SystemExit(self._fatal(prefix + str(exc))) from None
        if not (creds.api_key and creds.api_secret):
            raise SystemExit(
                self._fatal(
                    'the console mints tokens: it needs api_key and api_secret (credentials_file or environment)'
                )
            )
        for param in ('secret_file', 'logins_file'):
            if values[param] and not file_is_private(values[param]):
                self.get_logger().warning(f'{param} {values[param]} is readable by other users; chmod 600')
        policy = TokenPolicy(
            creds.api_key,
            creds.api_secret,
            values['room'],
            values['identity'],
            values['token_ttl_s'],
            secret=secret,
            logins=logins,
        )
        config = page_config(
            contract,
            keymap,
            livekit_url=values['livekit_url'],
            room=values['room'],
            contract_name=os.path.basename(contract_file),
            robot_identity=values['robot_identity'],
            needs_secret=policy.needs_secret,
            logins=policy.uses_logins,
        )
        web_root = Path(values['web_root']) if values['web_root'] else default_web_root()
        self.server = ConsoleServer(web_root, config, policy, values['address'], values['port'], self._on_event)
        missing = self.server.bundle_missing()
        if missing:
            self.get_logger().warning(
                f'the console page is not built ({", ".join(missing)} missing in {web_root}): the page answers 503 '
                'until `make setup` (or `npm ci && npm run build` in portal_bridge/web/console) has run'
            )
        self.loop = LoopThread('console-http')
        try:
            self.loop.run(self.server.start(), timeout=10)
        except OSError as exc:
            self.loop.stop()
            raise SystemExit(
                self._fatal(f'cannot listen on {values["address"]}:{values["port"]}: {exc.strerror}')
            ) from None
        pad = keymap['gamepad']
        keys = len(keymap['keyboard']) + (len(pad['axes']) + len(pad['buttons']) if pad else 0)
        self.get_logger().info(
            f'console at {self.server.url} ({access_line}); room {values["room"]!r} on {values["livekit_url"]}; '
            f'identity {values["identity"]!r} (tokens {values["token_ttl_s"]} s), contract {contract_file}, '
            f'{keys} key/stick/button binding(s)'
        )
        self.diagnostics = DiagnosticsPublisher(self, hardware_id=f'portal_bridge/console/{values["identity"]}')
        self.diagnostics.add('console', self._diag)

    def _fatal(self, message: str) -> int:
        self.get_logger().fatal(message)
        return 2

    def _on_event(self, kind: str, detail: str) -> None:
        """Called on the HTTP thread for every token given or refused."""
        with self._lock:
            self.counts[kind] += 1
            first = self.counts[kind] == 1
        if kind == 'token':
            self.get_logger().info(f'token: {detail}')
        elif first or kind in ('token-refused', 'cross-site'):
            self.get_logger().warning(f'{kind}: {detail}')  # throttled, bad or foreign-Host requests: the first

    def _diag(self):
        with self._lock:
            counts = dict(self.counts)
        refused = sum(
            counts.get(k, 0) for k in ('token-refused', 'token-throttled', 'refused-host', 'bad-token-request')
        )
        level = WARN if refused else OK
        message = f'serving {self.server.url}' + (f'; {refused} request(s) refused' if refused else '')
        return level, message, {'url': self.server.url, 'tokens': counts.get('token', 0), **counts}

    def shutdown(self) -> None:
        if self.loop.running:
            try:
                self.loop.run(self.server.stop(), timeout=5)
            finally:
                self.loop.stop()
        self._restore_logging()


def main(args: Optional[Sequence[str]] = None) -> int:
    return run_node(ConsoleNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
