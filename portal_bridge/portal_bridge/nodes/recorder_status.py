"""The recorder's state for users: ``~/recording``, ``~/episode_events`` and its diagnostics.

Part of :class:`~.recorder.Recorder` (a mixin, like robot_bridge's parts): what it reports, not
what it records. Reads the recorder's fields under its lock.
"""

from __future__ import annotations

from portal_bridge_msgs.msg import EpisodeEvent, RecordingState

from ..dataset.writer import Episode
from ..ros.diagnostics import ERROR, OK, WARN

__all__ = ['RecorderStatus']


class RecorderStatus:
    """Episode events, the latched recording state and the ``recording``/``transport`` tasks."""

    def _event(self, event: str, index: int, task: str, span: tuple[int, int] = (0, 0)) -> None:
        msg = EpisodeEvent(event=event, episode_index=index, task=task)
        msg.first_observation_ts_us, msg.last_observation_ts_us = span
        msg.header.stamp = self.get_clock().now().to_msg()
        self.event_pub.publish(msg)

    def _publish_state_if_recording(self) -> None:
        if self._matcher is not None or self._saving:
            self._publish_state()

    def _publish_state(self) -> None:
        with self._lock:
            episode = self._episode if isinstance(self._episode, Episode) else None
            msg = RecordingState(
                recording=self._matcher is not None,
                episode_index=self._next_index(),
                task=self._task if self._matcher is not None else '',
                frames=episode.frames if episode else 0,
                duration_s=episode.duration_s if episode else 0.0,
                dataset_root=self.dataset_root,
                episodes_saved=self._writer.total_episodes if self._writer else 0,
                frames_saved=self._writer.total_frames if self._writer else 0,
                episodes_saving=sum(1 for f in self._saving if not f.done()),
                error=self._error,
            )
        msg.header.stamp = self.get_clock().now().to_msg()
        self.state_pub.publish(msg)

    def _diag_recording(self):
        with self._lock:
            episode = self._episode if isinstance(self._episode, Episode) else None
            backlog = episode.encoder_backlog if episode else 0
            values = {
                'recording': self._matcher is not None,
                'task': self._task if self._matcher is not None else '',
                'episode_frames': episode.frames if episode else 0,
                'episodes_saved': self._writer.total_episodes if self._writer else 0,
                'frames_saved': self._writer.total_frames if self._writer else 0,
                'episodes_saving': sum(1 for f in self._saving if not f.done()),
                'observations_seen': self.observations_seen,
                'executed_actions_seen': self.executed_seen,
                'candidate_actions_seen': self.candidate_seen,
                'frames_without_action': self.frames_without_action,
                'unmatched_actions': self.unmatched_actions,
                'frames_refused': self.frames_refused,
                'frames_waiting': self._matcher.waiting if self._matcher else 0,
                'encoder_backlog_frames': backlog,
                'dataset_root': self.dataset_root,
            }
            error = self._error
        if error:
            return ERROR, error, values
        if backlog > 2 * self.fps:
            return WARN, f'video encoding {backlog / self.fps:.1f} s behind', values
        if self._matcher is not None:
            return OK, f"recording '{values['task']}': {values['episode_frames']} frames", values
        return OK, f'idle: {values["episodes_saved"]} episodes saved', values

    def _diag_transport(self):
        t = self.operator.metrics().transport
        values = self.transport_values('frames_received', {'frames_received': 'frames_received'}, ('states_received',))
        return OK, f'{t.states_received} states received', values
