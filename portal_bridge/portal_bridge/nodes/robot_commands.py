"""robot_bridge's command path: actions and chunks in, controller commands out.

Part of :class:`~.robot_bridge.RobotBridge`. Actions and chunks arrive on the LiveKit thread,
are checked (NaN, limits), built into the command type's message and handed to the command output
(:mod:`..control.command_output`), whose state machine decides what is published; the e-stop's
one safe command is built here. The safety parameters are validated here at startup and on every
``ros2 param set``.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

from ..commands import COMMANDS
from ..control.safety import ChunkAlignment, Emit, SafetyState, align_chunk
from ..portal import Action, ActionChunk, now_us
from ..ros.joints import apply_limits, nan_fields

__all__ = ['RobotCommands']


class RobotCommands:
    """The command path and the safety parameters of robot_bridge. Mixed into RobotBridge, whose attributes it uses."""

    # -- actions (LiveKit thread) -------------------------------------------------------------------
    def _checked(self, names: Sequence[str], values: Sequence[float], what: str) -> Optional[list[float]]:
        bad = nan_fields(names, values)
        if bad:
            self.count('nan-action', f'{what} with NaN in {bad} rejected; never sent to the controller')
            return None
        lower, upper = self.limits
        if lower is None or len(names) != len(lower):
            return list(values)
        out, outside = apply_limits(values, lower, upper)
        if outside:
            fields = [names[i] for i in outside]
            if self.limit_policy == 'reject':
                self.count('limit-rejected', f'{what} outside action limits in {fields} rejected')
                return None
            self.count('limit-clamped', f'{what} outside action limits in {fields} clamped')
        return out

    def _on_action(self, action: Action) -> None:
        if self.builder is None:
            return
        start = time.perf_counter_ns()
        values = self._checked(self.builder.action_fields, action.raw, 'action')
        if values is None:
            return
        if not self.output.action(action.sender, self.builder.build(values)):
            self._not_driven(action.sender)
            return
        self.latency['command_bridge'].add((time.perf_counter_ns() - start) // 1000)

    def _on_chunk(self, chunk: ActionChunk) -> None:
        if self.chunk_builder is None:
            return
        matrix = chunk.matrix()
        rows = []
        for r in range(chunk.horizon):
            row = self._checked(self.chunk_fields, matrix[r].tolist(), f"chunk '{chunk.name}' row {r}")
            if row is None:
                return  # one bad row rejects the whole chunk
            rows.append(row)
        fps = self.contract.fps
        if self.chunk_alignment == 'observation':
            align = align_chunk(len(rows), fps, chunk.in_reply_to_ts_us, now_us())
        else:
            align = ChunkAlignment(0, 0.0)
        if align is None:
            self.count(
                'chunk-stale',
                f"chunk '{chunk.name}' from '{chunk.sender}' arrived after its last row was due "
                '(chunk_alignment observation); skipped',
            )
            return
        if align.skipped:
            self.count('chunk-rows-skipped', n=align.skipped)
        rows = rows[align.first_row :]
        if self.chunk_mode == 'trajectory':
            msg = self.chunk_builder.build_trajectory(rows, fps, align.first_offset_s)
            duration = align.first_offset_s + (len(rows) - 1) / fps
            out = self.output.trajectory(chunk.sender, msg, duration)
        else:
            commands = [self.chunk_builder.build(row) for row in rows]
            out = self.output.stepped(chunk.sender, commands, align.first_offset_s, 1.0 / fps)
        if not out and not self.safety.playing:
            self._not_driven(chunk.sender)

    def _not_driven(self, sender: str) -> None:
        if self.safety.estopped:
            self.count('estop-latched', f"input from '{sender}' ignored: the emergency stop is latched")
        else:
            self.count('not-active-operator', f"input from '{sender}', who is not the active operator, ignored")

    # -- command output ------------------------------------------------------------------------------
    def _publish_emit(self, emit: Emit) -> None:
        """Publish what the state machine decided (called under the output's lock)."""
        if self.command_pub is None:
            return
        if emit.kind in ('command', 'hold'):
            msg = emit.command
        elif emit.kind == 'zero':
            msg = (self.builder or self.chunk_builder).zeros()
        else:
            msg = self._safe_message()
            if msg is None:
                return
        self.command_pub.publish(msg)
        self._commands_published += 1

    def _safe_message(self):
        """The e-stop's one command: stop where the robot is, whatever on_timeout says."""
        builder = self.builder or self.chunk_builder
        kind = COMMANDS[self.command_type]
        if kind.stop_here is not None:
            return kind.stop_here(builder.joints)  # e.g. an empty trajectory: stop and hold where it is
        if not kind.joint_based or self.command_interface != 'position':
            return builder.zeros()
        msg = builder.build_positions(self._measured)
        if msg is None:
            missing = [j for j in builder.joints if j not in self._measured]
            self.get_logger().error(
                f'emergency stop: no measured position for {missing} on {self.joint_states_topic}; no stop command '
                'sent, the position controller keeps its last target'
            )
        return msg

    def _on_safety_transition(self, before: SafetyState, after: SafetyState, reason: str) -> None:
        log = self.get_logger()
        if after is SafetyState.STOPPED:
            what = {'hold': 'holding' if self.safety.hold_resends else 'controller holds', 'zero': 'zero sent',
                    'stop': 'nothing sent'}[self.safety.on_timeout]  # fmt: skip
            text = f'safe state (on_timeout {self.safety.on_timeout}: {what}): {reason}'
            (log.warning if self.safety.tripped else log.info)(text)
        elif after is SafetyState.DRIVING and before is SafetyState.STOPPED and self.safety.stop_cause == 'timeout':
            log.info(f"actions from '{self.safety.operator}' resumed")
        elif after is SafetyState.ESTOPPED:
            log.error(
                f'EMERGENCY STOP latched ({reason}): command output in its safe state and silent; handoffs refused '
                f'until {self.get_fully_qualified_name()}/reset_emergency_stop'
            )
        elif before is SafetyState.ESTOPPED:
            log.warning('emergency stop reset: nobody is in control; an operator must claim control to drive again')

    # -- configuration checks ----------------------------------------------------------------------
    def _validate(self, lower, upper, rpc_methods, rpc_services) -> None:
        problems = self._safety_problems(
            {
                'on_timeout': self.on_timeout,
                'action_timeout_ms': self.action_timeout_ms,
                'action_limits_lower': lower,
                'action_limits_upper': upper,
            }
        )
        if rpc_services and len(rpc_services) != len(rpc_methods):
            problems.append('rpc_services needs one entry per rpc_method')
        if problems:
            raise SystemExit(self._fatal('; '.join(problems))) from None
        self._warn_zero_position(self.on_timeout)

    def _safety_problems(self, values: dict) -> list[str]:
        """What is wrong with these safety parameter values (at startup and on every change)."""
        problems = []
        allowed_policies = COMMANDS[self.command_type].timeout_policies
        on_timeout = values['on_timeout']
        if on_timeout not in allowed_policies:
            problems.append(
                f"on_timeout '{on_timeout}' is not allowed for command_type {self.command_type}"
                + (' (a held velocity keeps the robot moving)' if on_timeout == 'hold' else '')
                + f'; use {" or ".join(allowed_policies)}'
            )
        if values['action_timeout_ms'] <= 0:
            problems.append('action_timeout_ms must be > 0')
        if values.get('limit_policy', 'clamp') not in ('clamp', 'reject'):
            problems.append(f"limit_policy '{values['limit_policy']}' must be clamp or reject")
        lower, upper = list(values['action_limits_lower']), list(values['action_limits_upper'])
        n = len(self.contract.action)
        if len(lower) != len(upper) or (lower and len(lower) != n):
            problems.append(
                f'action_limits_lower/upper need {n} values each (one per action field), or none; change both '
                'together (set_parameters_atomically, or a parameter file)'
            )
        elif any(not (lo <= hi) for lo, hi in zip(lower, upper)):
            problems.append('action_limits_lower must not exceed action_limits_upper (and no NaN)')
        return problems

    def _warn_zero_position(self, on_timeout: str) -> None:
        if on_timeout == 'zero' and self.command_interface == 'position' and self.command_type != 'twist':
            self.get_logger().warning(
                'on_timeout zero sends all-zero commands: under position control that drives every joint to 0'
            )

    def _apply_safety_parameters(self, values: dict) -> Optional[str]:
        """``ros2 param set`` of a safety parameter: refused with the reason, or applied at once."""
        problems = self._safety_problems(values)
        if problems:
            return '; '.join(problems)
        lower, upper = list(values['action_limits_lower']), list(values['action_limits_upper'])
        with self.output.lock:
            self.safety.configure(timeout_s=values['action_timeout_ms'] / 1000.0, on_timeout=values['on_timeout'])
            self.limits = (lower, upper) if lower else (None, None)
            self.limit_policy = values['limit_policy']
            self.action_timeout_ms = values['action_timeout_ms']
            self.on_timeout = values['on_timeout']
        self._warn_zero_position(values['on_timeout'])
        return None
