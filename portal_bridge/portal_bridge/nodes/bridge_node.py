"""What robot_bridge and operator_bridge share: parameters, credentials, the LiveKit thread.

The rclpy executor keeps the main thread; the Portal session lives on one asyncio loop in its
own thread (:class:`~portal_bridge.portal.loop_thread.LoopThread`). Session callbacks arrive on
that thread; they publish with rclpy publishers (thread-safe) or hand heavy work to a worker,
and never wait on the executor. Service callbacks wait on the loop with a timeout.

Bad input is counted by reason and logged once per reason; ``/diagnostics`` shows the counts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
import dataclasses
import os
import threading
import time
import traceback
from typing import Any, Callable, Optional

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from ..portal import ContractError, WireContract
from ..portal.errors import RoomError
from ..portal.loop_thread import LoopThread
from ..portal.room.session import ConnectionState, PortalSession
from ..ros.counters import ADJUSTED, REJECTED, kind_of
from ..ros.credentials import Credentials, CredentialsError, explain_token, load_credentials, redact
from ..ros.diagnostics import ERROR, OK, WARN, DiagnosticsPublisher
from ..ros.params import ParameterError, declare
from ..ros.ros_logging import route_python_logging, route_session_logging
from ..ros.service_host import ServiceHost

__all__ = ['BridgeNode', 'LATCHED', 'default_contract_path']

LATCHED = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
_RETRY_S = (1.0, 2.0)


def default_contract_path() -> str:
    try:
        return os.path.join(get_package_share_directory('portal_bridge'), 'config', 'portal.yaml')
    except (PackageNotFoundError, ValueError):
        return os.path.join(os.path.dirname(__file__), '..', 'config', 'portal.yaml')


class BridgeNode(Node):
    """Base node: connection parameters, contract, credentials, session lifecycle, diagnostics."""

    def __init__(self, node_name: str, default_identity: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.url = self.param('livekit_url', 'ws://127.0.0.1:7880', 'LiveKit server URL (ws:// or wss://).')
        self.identity = self.param('identity', default_identity, 'Participant identity in the room; unique per room.')
        self.room = self.param('room', 'portal', 'LiveKit room of the Portal session.')
        self.contract_file = self.param(
            'contract_file',
            default_contract_path(),
            'Wire contract (livekit-portal portal.yaml format, version 1). Every peer must use the same.',
        )
        self.credentials_file = self.param(
            'credentials_file',
            '',
            'File with LiveKit credentials (token, or api_key and api_secret). Empty: LIVEKIT_TOKEN, '
            'else LIVEKIT_API_KEY and LIVEKIT_API_SECRET from the environment. Secrets never go in parameters.',
        )
        self.e2ee_key_file = self.param(
            'e2ee_key_file', '', 'File whose bytes are the shared end-to-end encryption key; empty: no E2EE.'
        )
        self._restore_logging = route_python_logging(self)
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._logged: set[str] = set()
        self._rate_prev: dict[str, tuple[float, dict[str, int]]] = {}
        self.contract = self._load_contract()
        self.credentials = self._load_credentials()
        self.e2ee_key = self._load_key()
        self.loop = LoopThread(f'{node_name}-livekit')
        self.service_host = ServiceHost(self)
        self.session: Optional[PortalSession] = None
        self._connect_future = None
        self._connected_once = threading.Event()
        self._shutting_down = False
        self.active_operator_pub = self.create_publisher(String, '~/active_operator', LATCHED)
        self.diagnostics = DiagnosticsPublisher(self, hardware_id=f'portal_bridge/{self.identity}')
        self.diagnostics.add('connection', self._diag_connection)

    # -- parameters ------------------------------------------------------------------------------
    def param(self, name: str, default: Any, description: str, **options: Any) -> Any:
        """Declare a parameter (read-only unless ``dynamic=True``; ``choices``, ``value_range``).

        A bad value stops the node with one line (exit 2); see :func:`portal_bridge.params.declare`.
        """
        try:
            return declare(self, name, default, description, **options)
        except ParameterError as exc:
            raise SystemExit(self._fatal(str(exc))) from None

    def list_param(self, name: str, description: str, item_type: type = str, dynamic: bool = False) -> list:
        """A string or double array parameter that defaults to empty (an unset array)."""
        return self.param(name, [], description, item_type=item_type, dynamic=dynamic)

    def _load_contract(self) -> WireContract:
        try:
            contract = WireContract.from_yaml_file(self.contract_file)
        except ContractError as exc:
            raise SystemExit(self._fatal(f'wire contract {self.contract_file}: {exc}')) from None
        fp = contract.fingerprints()
        self.get_logger().info(
            f'wire contract {self.contract_file}: state {fp["state"]}, action {fp["action"]}, '
            f'{len(contract.videos)} video track(s), window {fp["search_range_us"]} us'
        )
        return contract

    def _load_credentials(self) -> Credentials:
        try:
            creds = load_credentials(self.credentials_file)
        except CredentialsError as exc:
            raise SystemExit(self._fatal(str(exc))) from None
        if self.credentials_file and os.stat(self.credentials_file).st_mode & 0o077:
            self.get_logger().warning(f'credentials_file {self.credentials_file} is readable by other users; chmod 600')
        if creds.token:
            problem = explain_token(creds.token)
            if problem:
                raise SystemExit(self._fatal(problem)) from None
        return creds

    def _load_key(self) -> Optional[bytes]:
        if not self.e2ee_key_file:
            return None
        try:
            with open(self.e2ee_key_file, 'rb') as f:
                key = f.read().strip()
        except OSError as exc:
            raise SystemExit(self._fatal(f'cannot read e2ee_key_file {self.e2ee_key_file}: {exc.strerror}')) from None
        if not key:
            raise SystemExit(self._fatal(f'e2ee_key_file {self.e2ee_key_file} is empty')) from None
        return key

    def _fatal(self, message: str) -> int:
        """Log a configuration error in one line and undo what construction started; the exit code.

        Every caller raises SystemExit with the result while the node is being constructed, so
        nobody will call shutdown(): Python logging goes back to where it was (a later node or
        test must not log into this dead node) and the threads started so far are stopped.
        """
        self.get_logger().fatal(message)
        self._abandon_construction()
        return 2

    def _abandon_construction(self) -> None:
        for name in ('service_host', 'safety_host'):
            host = getattr(self, name, None)
            if host is not None:
                host.stop()
        loop = getattr(self, 'loop', None)
        if loop is not None and loop.running:
            loop.stop()
        restore = getattr(self, '_restore_logging', None)
        if restore is not None:
            restore()

    # -- bad input accounting --------------------------------------------------------------------
    def count(self, reason: str, message: str = '', n: int = 1) -> None:
        """Count a rejected input under ``reason``; log ``message`` the first time."""
        reason = reason.replace('_', '-')  # one style everywhere (see ros/counters.py)
        with self._counts_lock:
            self._counts[reason] += n
            first = reason not in self._logged
            self._logged.add(reason)
        if first and message:
            self.get_logger().warning(f'{message} (further ones are counted in /diagnostics as {reason})')

    def guarded(self, callback: Callable[..., None]) -> Callable[..., None]:
        """Wrap a ROS callback so an unexpected exception is logged and counted, not fatal.

        rclpy lets a callback's exception end ``spin()``, which would take the node down on
        one malformed message. Every subscription and timer callback goes through this.
        """

        def run(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:
                self.count('internal-error')
                if 'internal_error_logged' not in self._logged:
                    self._logged.add('internal_error_logged')
                    self.get_logger().error(
                        f'{getattr(callback, "__name__", "callback")} failed: {exc!r}\n{traceback.format_exc()}'
                    )

        return run

    def _diag_conversion(self):
        """WARN for input dropped as bad; input changed to fit and control-plane events are only counted.

        ERROR while joining the room keeps failing. Kinds come from :mod:`..ros.counters`.
        """
        counts = self.counts()
        adjusted = {k: v for k, v in counts.items() if kind_of(k) == ADJUSTED}
        rejected = {k: v for k, v in counts.items() if kind_of(k) == REJECTED}
        level = WARN if rejected else OK
        if counts.get('connect-failed') and self.session is not None and not self.session.is_connected:
            level = ERROR
        parts = []
        if rejected:
            parts.append(f'{sum(rejected.values())} inputs rejected ({", ".join(sorted(rejected))})')
        if adjusted:
            parts.append(f'{sum(adjusted.values())} adjusted ({", ".join(sorted(adjusted))})')
        return level, '; '.join(parts) or 'no conversion errors', counts

    def counts(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self._counts)

    # -- session lifecycle -----------------------------------------------------------------------
    def start_session(self, session: PortalSession) -> None:
        """Connect in the background, retrying while the server is unreachable."""
        self.session = session
        session.log = route_session_logging(self, session.log)
        session.on_connection_state(self._on_connection_state)
        session.on_active_operator_changed(self._publish_active_operator)
        self._publish_active_operator(None)
        self._connect_future = self.loop.submit(self._connect_forever(session))

    async def _connect_forever(self, session: PortalSession) -> None:
        attempt = 0
        creds = self.credentials
        while True:
            try:
                await session.connect(
                    self.url,
                    creds.token,
                    api_key=creds.api_key,
                    api_secret=creds.api_secret,
                    identity=self.identity,
                    room=self.room,
                )
                return
            except RoomError as exc:
                delay = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                attempt += 1
                text = redact(str(exc), creds)
                if '401' in text or 'nauthorized' in text or 'token' in text.lower():
                    hint = explain_token(creds.token) if creds.token else None
                    text = hint or f'LiveKit rejected the credentials ({text})'
                self.count('connect-failed')
                self.get_logger().error(
                    f'cannot join room {self.room!r} at {self.url}: {text}; retrying in {delay:.0f} s'
                )
                await asyncio.sleep(delay)

    def _on_connection_state(self, state: ConnectionState) -> None:
        log = self.get_logger()
        if state is ConnectionState.CONNECTED:  # the session itself logs the join
            self._connected_once.set()
            self.on_connected()
        elif state is ConnectionState.RECONNECTING:
            log.warning('LiveKit connection lost; reconnecting')
        elif state is ConnectionState.DISCONNECTED and self._connected_once.is_set() and not self._shutting_down:
            log.error('disconnected from LiveKit')

    def on_connected(self) -> None:
        """Hook for subclasses (runs on the LiveKit thread)."""

    def wait_connected(self, timeout: float) -> bool:
        return self._connected_once.wait(timeout)

    def _publish_active_operator(self, identity: Optional[str]) -> None:
        self.active_operator_pub.publish(String(data=identity or ''))
        self.on_active_operator(identity)

    def on_active_operator(self, identity: Optional[str]) -> None:
        """Hook for subclasses (runs on the LiveKit thread)."""

    def run_on_loop(self, coro, timeout: float = 20.0) -> Any:
        """Run a coroutine on the LiveKit thread from a ROS callback, waiting at most ``timeout``."""
        return self.loop.run(coro, timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Leave the room and stop the LiveKit thread (idempotent)."""
        if not self.loop.running:
            return
        self._shutting_down = True
        self.service_host.stop()
        if self._connect_future is not None:
            self._connect_future.cancel()
        if self.session is not None:
            try:
                self.loop.run(self.session.disconnect(), timeout)
                self.get_logger().info(f"left room '{self.room}'")
            except Exception as exc:
                self.get_logger().warning(f'leaving the room did not finish cleanly: {exc}')
        self.loop.stop()
        self._restore_logging()

    def destroy_node(self) -> None:
        self.shutdown()
        super().destroy_node()

    # -- diagnostics -----------------------------------------------------------------------------
    def _diag_connection(self):
        s = self.session
        state = s.connection_state if s is not None else ConnectionState.DISCONNECTED
        level = {ConnectionState.CONNECTED: OK, ConnectionState.RECONNECTING: WARN}.get(state, ERROR)
        values = {
            'state': state.value,
            'url': self.url,
            'room': self.room,
            'identity': self.identity,
            'reconnect_count': s.reconnect_count if s else 0,
            'active_operator': (s.active_operator() if s else None) or '',
            'operators': s.operators() if s else [],
        }
        return level, state.value, values

    def _diag_rtt(self):
        r = self.session.metrics().rtt
        values = dataclasses.asdict(r)  # every field of RttMetrics, under its own name
        return OK, 'no samples yet' if r.rtt_us_last is None else f'{r.rtt_us_last / 1000:.1f} ms', values

    def add_diagnostics(self, **tasks: Callable[[], tuple]) -> None:
        """Register the node's own tasks after the ones every bridge has.

        Every bridge reports ``transport`` (its ``_diag_transport``), ``rtt``, ``latency`` (its
        ``self.latency`` probes) and ``conversion`` (its counters, :mod:`..ros.counters`).
        """
        common = {
            'transport': self._diag_transport,
            'rtt': self._diag_rtt,
            'latency': lambda: self.diag_latency(self.latency),
            'conversion': self._diag_conversion,
        }
        for name, task in {**common, **tasks}.items():
            self.diagnostics.add(name, task)

    def transport_values(self, frames: str, per_track: dict[str, str], scalars: tuple[str, ...]) -> dict:
        """The `transport` task's values, named after :class:`TransportMetrics` fields.

        fps per track (from the ``frames`` counters), the ``per_track`` fields under their suffix,
        the ``scalars`` fields, and the drops by reason.
        """
        t = self.session.metrics().transport
        values = {f'{k}.fps': v for k, v in self.rates('frames', getattr(t, frames)).items()}
        for field_name, suffix in per_track.items():
            values.update({f'{k}.{suffix}': v for k, v in getattr(t, field_name).items()})
        values.update({name: getattr(t, name) for name in scalars})
        values.update({f'dropped.{k}': v for k, v in t.dropped.items()})
        return values

    def diag_latency(self, rings):
        """The `latency` task: p50/p95 (µs) of each of the node's latency probes."""
        values = {}
        for name, ring in rings.items():
            p50, p95 = ring.percentiles(0.5, 0.95)
            values[f'{name}_us_p50'], values[f'{name}_us_p95'] = p50, p95
        return OK, 'bridge-internal and delivery latencies (us)', values

    def rates(self, key: str, counts: dict[str, int]) -> dict[str, float]:
        """Per-second rates of counters since the previous call with the same key."""
        now = time.monotonic()
        prev = self._rate_prev.get(key)
        self._rate_prev[key] = (now, dict(counts))
        if prev is None:
            return {k: 0.0 for k in counts}
        dt = max(now - prev[0], 1e-6)
        return {k: (v - prev[1].get(k, 0)) / dt for k, v in counts.items()}
