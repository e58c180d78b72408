"""robot_bridge's /diagnostics tasks: transport, policy, gate, safety, conversion."""

from __future__ import annotations

from ..control.safety import SafetyState
from ..ros.diagnostics import ERROR, OK, WARN

__all__ = ['RobotDiagnostics']


class RobotDiagnostics:
    """Diagnostics tasks of robot_bridge. Mixed into RobotBridge, whose attributes it uses."""

    # -- diagnostics -----------------------------------------------------------------------------
    def _diag_transport(self):
        t = self.robot.metrics().transport
        rates = self.rates('frames', t.frames_sent)
        values = {f'{k}.fps': v for k, v in rates.items()}
        values.update({f'{k}.frames_sent': v for k, v in t.frames_sent.items()})
        values.update({f'{k}.dropped_publisher_full': v for k, v in t.frames_dropped_publisher_full.items()})
        values.update(
            states_sent=t.states_sent,
            states_skipped_rate=self.states_skipped,
            actions_received=t.actions_received,
            action_chunks_received=t.action_chunks_received,
            action_jitter_us=t.action_jitter_us,
        )
        values.update({f'dropped.{k}': v for k, v in t.dropped.items()})
        return OK, f'{t.states_sent} states sent', values

    def _diag_policy(self):
        p = self.robot.metrics().policy
        values = {
            'e2e_us_p50': p.e2e_us_p50,
            'e2e_us_p95': p.e2e_us_p95,
            'correlated_received': p.correlated_received,
        }
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
