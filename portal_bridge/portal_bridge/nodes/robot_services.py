"""robot_bridge's services: emergency stop, reset, local handoff, Portal RPC to ROS services.

Part of :class:`~.robot_bridge.RobotBridge`. The e-stop closes the gate locally first (no network
round trip), then latches the command output's safe state; it and its reset run on a service
thread of their own, so they answer while a handoff waits on the network.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from ..portal.errors import EMERGENCY_STOP_REFUSED, RPC_APPLICATION_ERROR, PointerRefused, RpcCallError

__all__ = ['RobotServices']

_HANDOFF_WAIT_S = 3.0  # a local handoff request waits at most this long for the room to agree
_RELEASE_WAIT_S = 1.0  # an e-stop waits at most this long, after the safe state, for the pointer to clear


class RobotServices:
    """Safety and control services and the RPC-to-service bridge; mixed into RobotBridge."""

    # -- safety ----------------------------------------------------------------------------------
    def on_active_operator(self, identity: Optional[str]) -> None:
        self.output.operator_changed(identity)

    def emergency_stop(self, source: str, wait_for_release: bool = False) -> bool:
        """Latch the e-stop (any thread): gate closed, safe command, handoffs refused. False if latched.

        The gate closes first, so no action arriving meanwhile is accepted (and re-broadcast as
        executed) only to be refused by the latched output; both steps are local and immediate.
        ``wait_for_release`` (the service, which reports "active operator cleared") then waits,
        bounded, for the loop to clear the pointer; the topic path never waits.
        """
        if self.robot.locked_out is None:  # latched already: the gate is closed, and the first reason stays
            self.robot.lock_out(
                f'the emergency stop is latched on the robot ({source}); reset it locally with '
                f'{self.get_fully_qualified_name()}/reset_emergency_stop',
                release=False,
            )
        out = self.output.estop(f'emergency stop from {source}')
        # Only now the pointer: its change must find the output latched, or an on_timeout reaction
        # to "operator left" (a zero, a hold) would be published before the e-stop's safe command.
        released = self.robot.release_pointer()
        if out:
            self.count('emergency-stop')
            self.estop_pub.publish(Bool(data=True))
        # The safe state is already out; wait (bounded) only so that "operator cleared" is true
        # when the caller reads it. The loop runs no network round trip before clearing it.
        if wait_for_release and not released.wait(_RELEASE_WAIT_S):
            self.get_logger().warning(
                f'emergency stop: the Portal loop did not clear the active operator within {_RELEASE_WAIT_S:.1f} s '
                '(the gate is closed regardless; it clears when the loop runs)'
            )
        return bool(out)

    def _srv_emergency_stop(self, request, response):
        first = self.emergency_stop(f'service {self.get_fully_qualified_name()}/emergency_stop', wait_for_release=True)
        response.success = True
        response.message = (
            'emergency stop latched: command output in safe state, active operator cleared, handoffs refused '
            'until reset_emergency_stop'
            if first
            else 'emergency stop already latched'
        )
        return response

    def _rpc_emergency_stop(self, data) -> str:
        """``portal_bridge.emergency_stop`` from an operator or supervisor (LiveKit thread, never waits).

        The same local e-stop as the service: gate closed, safe command, handoffs refused until
        the reset service is called on the robot. The payload, if any, is the caller's reason.
        """
        caller = data.caller_identity
        refusal = self.robot.access.may_stop(caller, caller in self.robot.operators())
        if refusal is not None:
            self.count('estop-rpc-refused', f'emergency stop by Portal RPC refused: {refusal}')
            raise RpcCallError(EMERGENCY_STOP_REFUSED, refusal)
        reason = ' '.join((data.payload or '').split())[:200]
        first = self.emergency_stop(f"Portal RPC from '{caller}'" + (f': {reason}' if reason else ''))
        if first:
            self.get_logger().error(
                f"emergency stop latched by '{caller}' over Portal RPC" + (f': {reason}' if reason else '')
            )
        return 'emergency stop latched' if first else 'emergency stop already latched'

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self.emergency_stop(f'topic {self.emergency_stop_topic}')

    def _srv_reset_emergency_stop(self, request, response):
        if not self.output.reset():
            response.success, response.message = False, 'no emergency stop is latched'
            return response
        self.robot.lift_lockout()
        self.estop_pub.publish(Bool(data=False))
        response.success = True
        response.message = 'emergency stop reset; nobody is in control (claim control to drive again)'
        return response

    def _srv_set_active_operator(self, request, response):
        identity = request.identity or None
        response.previous = self.robot.active_operator() or ''
        refusal = None
        if identity is not None and self.safety.estopped:
            refusal = self.robot.locked_out or 'the emergency stop is latched'
        elif not self.robot.access.may_drive(identity):
            refusal = f"'{identity}' is not in allowed_operators"
        if refusal is not None:
            self.count('local-handoff-refused')
            response.success, response.message = False, refusal
            response.active = response.previous
            return response
        try:
            confirmed = self.run_on_loop(
                self.robot.set_active_operator(identity, confirm_timeout=_HANDOFF_WAIT_S), _HANDOFF_WAIT_S + 1.0
            )
            response.success = True
            response.message = f'active operator: {identity or "(none)"}'
            if not confirmed:
                response.message += ' (in effect on the robot; the room has not acknowledged it yet, still retrying)'
        except PointerRefused as exc:
            response.success, response.message = False, str(exc)
        except Exception as exc:
            response.success, response.message = False, f'could not set the active operator: {exc!r}'
        response.active = self.robot.active_operator() or ''
        return response

    # -- RPC -> ROS services -----------------------------------------------------------------------
    def _serve_rpc(self, method: str, service: str) -> None:
        client = self.create_client(Trigger, service)

        async def handler(data) -> str:
            if not client.service_is_ready():
                raise RpcCallError(RPC_APPLICATION_ERROR, f"ROS service '{service}' is not available")
            loop = asyncio.get_running_loop()
            done: asyncio.Future = loop.create_future()

            def resolve(ros_future) -> None:  # on a ROS thread; the wait may have given up already
                if not done.done():
                    done.set_result(ros_future)

            ros_future = client.call_async(Trigger.Request())
            ros_future.add_done_callback(lambda f: loop.call_soon_threadsafe(resolve, f))
            try:
                finished = await asyncio.wait_for(done, self.rpc_timeout_s)
            except asyncio.TimeoutError:
                client.remove_pending_request(ros_future)  # a late reply is then dropped by rclpy
                ros_future.cancel()
                raise RpcCallError(
                    RPC_APPLICATION_ERROR,
                    f"ROS service '{service}' did not answer within {self.rpc_timeout_s:g} s",
                ) from None
            result = finished.result()
            if result is None or not result.success:
                message = (result.message if result is not None else '') or f"'{service}' reported failure"
                raise RpcCallError(RPC_APPLICATION_ERROR, message)
            return result.message

        self.robot.register_rpc_method(method, handler)
        self.get_logger().info(f"Portal RPC '{method}' -> ROS service {service}")
