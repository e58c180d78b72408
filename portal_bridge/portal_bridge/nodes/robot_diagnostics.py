"""robot_bridge's /diagnostics tasks: transport, policy, gate, safety, conversion."""

from __future__ import annotations

import dataclasses

from ..control.safety import SafetyState
from ..ros.diagnostics import ERROR, OK, WARN

__all__ = ['RobotDiagnostics']


class RobotDiagnostics:
    """Diagnostics tasks of robot_bridge. Mixed into RobotBridge, whose attributes it uses."""

    # -- diagnostics -----------------------------------------------------------------------------
    def _diag_transport(self):
        t = self.robot.metrics().transport
        scalars = ('states_sent', 'actions_received', 'action_chunks_received', 'action_jitter_us')
        per_track = {'frames_sent': 'frames_sent', 'frames_dropped_publisher_full': 'dropped_publisher_full'}
        values = self.transport_values('frames_sent', per_track, scalars)
        values['states_skipped'] = self.state_rate.skipped + (self.paced_states.skipped if self.paced_states else 0)
        return OK, f'{t.states_sent} states sent', values

    def _diag_policy(self):
        p = self.robot.metrics().policy
        values = dataclasses.asdict(p)  # every field of PolicyMetrics, under its own name
        msg = 'no correlated actions' if p.e2e_us_p50 is None else f'e2e p50 {p.e2e_us_p50 / 1000:.1f} ms'
        return OK, msg, values

    def _diag_gate(self):
        t = self.robot.metrics().transport
        active = self.robot.active_operator()
        values = {
            'active_operator': active or '',
            'actions_accepted': t.actions_received + t.action_chunks_received,
            'actions_dropped': t.dropped.get('gate', 0),
            'handoff_refused': t.dropped.get('handoff-refused', 0),
            'commands_published': self._commands_published,
            'allowed_operators': sorted(self.robot.access.allowed_operators),
        }
        return OK, f'active operator: {active or "(none)"}', values

    def _diag_safety(self):
        sm = self.safety
        p50, p99 = self.output.lateness.percentiles(0.5, 0.99)
        values = {
            'state': sm.state.value,
            'emergency_stopped': sm.estopped,
            'reason': sm.reason,
            'trips': sm.trips,
            'tripped': sm.tripped,
            'estops': sm.estops,
            'on_timeout': sm.on_timeout,
            'action_timeout_ms': self.action_timeout_ms,
            'chunk_rows_skipped_stale': self.counts().get('chunk-rows-skipped', 0),
            'chunk_rows_skipped_late_tick': sm.rows_skipped,
            'tick_lateness_us_p50': p50,
            'tick_lateness_us_p99': p99,
        }
        if sm.estopped:
            return ERROR, f'EMERGENCY STOP latched: {sm.estop_reason}', values
        if sm.tripped:
            return WARN, sm.reason, values
        if sm.state is SafetyState.DRIVING:
            return OK, 'actions flowing', values
        return OK, 'no active operator' if self.robot.active_operator() is None else 'waiting for actions', values
