"""recorder: HITL sessions as LeRobotDataset v3.0 episodes, with shadow candidates' actions.

Joins the room as an operator with action subscription and never drives. Every synchronized
observation becomes one frame (state, one image per camera) with the action the robot executed
in answer to it and that action's sender, as the robot's gate fixed it (so a handoff mid-episode
is labelled right). Participants named in ``candidates`` that stream actions while someone else
is in control are recorded next to the executed action, one feature each (NaN where a candidate
proposed nothing), for offline scoring with ``shadow_report``.

Episodes: ``~/start_episode`` (task), ``~/stop_episode`` (saved in the background; the next can
start at once), ``~/discard_episode``. State on the latched ``~/recording``, boundaries on
``~/episode_events`` (so a bag of the operator's topics can be cut the same way), health in
``/diagnostics`` (``recording`` task). Layout and matching rule: docs/recording.md.

Run: ``ros2 run portal_bridge recorder --ros-args -p dataset_root:=$HOME/datasets/pick -p room:=portal``
"""

from __future__ import annotations

from concurrent.futures import Future
import os
import threading
import time
from typing import Any, Optional, Sequence

from std_srvs.srv import Trigger

from portal_bridge_msgs.msg import EpisodeEvent, ExecutedAction, Observation, RecordingState
from portal_bridge_msgs.srv import StartEpisode

from ..dataset.matching import ActionIn, FrameMatcher, ObservationIn
from ..dataset.schema import VIDEO_CODECS, DatasetSchema, SchemaError
from ..dataset.writer import Episode, EpisodeResult, LeRobotWriter
from ..portal import Action, ActionChunk, Operator
from ..portal import Observation as PortalObservation
from ..portal.peer_settings import PeerSettings
from ..portal.room.session import now_us
from ..ros.observation_msgs import executed_action, executed_chunk, observation_to_msg
from .bridge_node import LATCHED, BridgeNode
from .node_main import run_node
from .recorder_status import RecorderStatus

__all__ = ['Recorder', 'main']

_POLL_S = 0.05  # how often waiting frames are checked for a late action (executor timer)


def action_values(record: Action | ActionChunk) -> list[float]:
    """An action's values in contract order; for a chunk, its first row (executed at once)."""
    if isinstance(record, ActionChunk):
        return [float(v) for v in record.matrix()[0]]
    return [float(v) for v in record.raw]


class Recorder(RecorderStatus, BridgeNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__('recorder', default_identity='recorder', **kwargs)
        p = self.param
        root = p(
            'dataset_root',
            os.path.join('~', 'portal_datasets', self.room),
            'Directory of the LeRobotDataset (created, or appended to when it holds the same schema).',
        )
        self.dataset_root = os.path.abspath(os.path.expanduser(root))
        self.fps = p(
            'fps',
            self.contract.fps,
            "Dataset fps (video timestamps are frame_index / fps); default the contract's.",
            value_range=(1, 1000),
        )
        self.video_codec = p('video_codec', 'h264', 'Camera video codec of the dataset.', choices=list(VIDEO_CODECS))
        self.candidates = self.list_param(
            'candidates', 'Identities whose actions, sent while another operator drives, are recorded (shadow).'
        )
        wait_ms = p(
            'action_wait_ms',
            1000,
            'How long an observation waits for the executed action that answers it before it is recorded without '
            'one, and an executed action for its observation (ms); policy latency must stay below it.',
            value_range=(1, 60000),
        )
        self.robot_type = p('robot_type', '', 'robot_type written to meta/info.json (empty: null).')
        self.operator = Operator(
            self.contract,
            settings=PeerSettings.of(self.contract, action_subscription=True),
            label=self.room,
            e2ee_key=self.e2ee_key,
        )
        self.state_names = tuple(f.name for f in self.contract.state)
        self.action_names = tuple(f.name for f in self.contract.action)
        self.track_order = list(self.contract.track_order)
        self._wait_us = int(wait_ms) * 1000
        # Threads: observations and actions arrive on the LiveKit thread, services on the service
        # host's, the poll timer on the executor. _lock guards the matcher, the episode and the writer.
        self._lock = threading.RLock()
        self._writer: Optional[LeRobotWriter] = None
        self._episode: Optional[Episode] = None
        self._matcher: Optional[FrameMatcher] = None
        self._task = ''
        self._closing = False  # stop_episode called: no new observations, waiting for late actions
        self._saving: list[Future] = []
        self._error = ''
        self.frames_refused = 0
        self.observations_seen = 0
        self.executed_seen = 0
        self.candidate_seen = 0
        self.unmatched_actions = 0
        self.frames_without_action = 0
        self._unmatched_base = self._without_base = 0  # the counters' values when the episode started
        self.latency: dict = {}  # no latency probes of its own (BridgeNode's `latency` task reads this)

        self.state_pub = self.create_publisher(RecordingState, '~/recording', LATCHED)
        self.event_pub = self.create_publisher(EpisodeEvent, '~/episode_events', 10)
        # What the recorder sees, for `ros2 bag record` (bag_to_lerobot turns such a bag into the same
        # dataset); built only while someone subscribes.
        self.observation_pub = self.create_publisher(Observation, '~/observation', 10)
        self.executed_pub = self.create_publisher(ExecutedAction, '~/executed_actions', 100)
        self.candidate_pub = self.create_publisher(ExecutedAction, '~/candidate_actions', 100)
        op = self.operator
        op.on_observation(self._on_observation)
        op.on_action(self._on_executed)
        for chunk in self.contract.action_chunks:
            op.on_action_chunk(chunk.name, self._on_executed)
        if self.candidates:
            op.on_candidate_action(self.candidates, self._on_candidate)
        srv = self.service_host
        srv.create_service(StartEpisode, '~/start_episode', self._srv_start)
        srv.create_service(Trigger, '~/stop_episode', self._srv_stop)
        srv.create_service(Trigger, '~/discard_episode', self._srv_discard)
        self.create_timer(_POLL_S, self.guarded(self._poll))
        self.create_timer(1.0, self.guarded(self._publish_state_if_recording))
        self.add_diagnostics(recording=self._diag_recording)
        self.get_logger().info(
            f'recording to {self.dataset_root} at {self.fps} fps ({self.video_codec}); candidates: '
            f'{", ".join(self.candidates) or "none"}; call ~/start_episode to begin'
        )
        self._publish_state()
        self.start_session(op)

    # -- session callbacks (LiveKit thread) ------------------------------------------------------------
    def _robot(self) -> str:
        return self.operator.robot_identity() or ''

    def _on_observation(self, obs: PortalObservation) -> None:
        self.observations_seen += 1
        if self.observation_pub.get_subscription_count():
            self.observation_pub.publish(
                observation_to_msg(obs, self.track_order, list(self.state_names), self._robot())
            )
        with self._lock:
            if self._episode is None or self._closing:
                return
            if self._writer is None and not self._open_writer(obs):
                return
            images = {name: frame.array() for name, frame in obs.frames.items()}
            received = obs.received_ns // 1000 if obs.received_ns else now_us()
            stamps = {name: frame.timestamp_us for name, frame in obs.frames.items()}
            self._matcher.add_observation(ObservationIn(obs.timestamp_us, obs.state.raw, images, received, stamps))
            self._drain(now_us())

    def _republish(self, pub, record: Action | ActionChunk) -> None:
        if pub.get_subscription_count():
            convert = executed_chunk if isinstance(record, ActionChunk) else executed_action
            pub.publish(convert(record, self._robot()))

    def _on_executed(self, record: Action | ActionChunk) -> None:
        self.executed_seen += 1
        self._republish(self.executed_pub, record)
        with self._lock:
            if self._matcher is not None:
                self._matcher.add_executed(self._action_in(record))

    def _on_candidate(self, record: Action | ActionChunk) -> None:
        self.candidate_seen += 1
        self._republish(self.candidate_pub, record)
        with self._lock:
            if self._matcher is not None:
                self._matcher.add_candidate(record.sender, self._action_in(record))

    @staticmethod
    def _action_in(record: Action | ActionChunk) -> ActionIn:
        return ActionIn(
            record.timestamp_us, record.sender, action_values(record), record.in_reply_to_ts_us or 0, now_us()
        )

    # -- frames (under _lock) ----------------------------------------------------------------------------
    def _schema(self, obs: Optional[PortalObservation]) -> DatasetSchema:
        cameras = []
        for name in self.track_order:
            frame = obs.frames.get(name) if obs is not None else None
            if frame is not None:
                cameras.append((name, frame.height, frame.width))
        return DatasetSchema(
            self.fps,
            self.state_names,
            self.action_names,
            tuple(cameras),
            tuple(self.candidates),
            self.video_codec,
            self.robot_type or None,
        )

    def _open_writer(self, obs: PortalObservation) -> bool:
        """Create or resume the dataset from the episode's first observation (it gives the frame sizes)."""
        missing = [t for t in self.track_order if t not in obs.frames]
        if missing:
            self._refuse(f'first observation of the episode lacks camera(s) {missing}: the dataset needs every camera')
            return False
        try:
            self._writer = LeRobotWriter(self.dataset_root, self._schema(obs))
        except (SchemaError, OSError) as exc:
            self._error = f'dataset {self.dataset_root}: {exc}'
            self.get_logger().error(f'{self._error}; episode stopped, nothing recorded')
            self._abandon_episode()
            return False
        self._episode = self._writer.start_episode(self._task)
        return True

    def _abandon_episode(self) -> None:
        self._episode = None
        self._matcher = None
        self._publish_state()

    def _refuse(self, message: str) -> None:
        self.frames_refused += 1
        self.count('frame-refused', f'observation not recorded: {message}')

    def _drain(self, now: int, flush: bool = False) -> None:
        frames = self._matcher.flush() if flush else self._matcher.ready(now)
        for frame in frames:
            try:
                self._episode.add(frame)
            except SchemaError as exc:
                self._refuse(str(exc))
        self.unmatched_actions = self._unmatched_base + self._matcher.unmatched_actions
        self.frames_without_action = self._without_base + self._matcher.frames_without_action

    def _poll(self) -> None:
        with self._lock:
            if self._matcher is not None and isinstance(self._episode, Episode):
                self._drain(now_us())

    # -- services (service host thread) ----------------------------------------------------------------
    def _srv_start(self, request, response):
        task = request.task.strip()
        with self._lock:
            if self._matcher is not None:
                response.success, response.message = False, f"episode already recording (task '{self._task}')"
                return response
            if not task:
                response.success, response.message = False, 'task is empty: name what the episode demonstrates'
                return response
            if self._writer is None and os.path.exists(os.path.join(self.dataset_root, 'meta', 'info.json')):
                try:
                    self._writer = self._resume()
                except (SchemaError, OSError) as exc:
                    self._error = f'dataset {self.dataset_root}: {exc}'
                    response.success, response.message = False, self._error
                    self.get_logger().error(self._error)
                    self._publish_state()
                    return response
            self._task = task
            self._error = ''
            self._matcher = FrameMatcher(round(1e6 / self.fps), self._wait_us, self.candidates)
            self._unmatched_base, self._without_base = self.unmatched_actions, self.frames_without_action
            # With no dataset yet the episode opens at its first observation (which gives the frame sizes).
            self._episode = self._writer.start_episode(task) if self._writer is not None else True
            index = self._next_index()
        self._event('start', index, task)
        response.success, response.episode_index = True, index
        response.message = f"recording episode {index}: '{task}'"
        self.get_logger().info(response.message)
        self._publish_state()
        return response

    def _resume(self) -> LeRobotWriter:
        """Append to the dataset on disk: its cameras and sizes are the ones frames must have."""
        import json

        with open(os.path.join(self.dataset_root, 'meta', 'info.json')) as f:
            on_disk = DatasetSchema.from_info(json.load(f))
        wanted = self._schema(None)
        problems = [d for d in on_disk.mismatch(wanted) if not d.startswith('cameras')]
        if [c[0] for c in on_disk.cameras] != self.track_order:
            problems.append(f'cameras {self.track_order} (dataset has {list(on_disk.camera_names)})')
        if problems:
            raise SchemaError(f'holds another schema: {"; ".join(problems)}')
        schema = DatasetSchema(
            self.fps,
            self.state_names,
            self.action_names,
            on_disk.cameras,
            tuple(self.candidates),
            self.video_codec,
            on_disk.robot_type,
        )
        writer = LeRobotWriter(self.dataset_root, schema)
        self.get_logger().info(
            f'appending to {self.dataset_root}: {writer.total_episodes} episodes, {writer.total_frames} frames'
        )
        return writer

    def _next_index(self) -> int:
        saved = self._writer.total_episodes if self._writer is not None else 0
        return saved + sum(1 for f in self._saving if not f.done())

    def _srv_stop(self, request, response):
        with self._lock:
            if self._matcher is None or self._closing:
                response.success, response.message = False, 'no episode is recording'
                return response
            self._closing = True
        # The episode takes no new observation, and its last ones get up to action_wait_ms for the
        # actions that answer them (in flight now), so the episode does not end with a cut.
        deadline = time.monotonic() + self._wait_us / 1e6
        while time.monotonic() < deadline:
            with self._lock:
                if isinstance(self._episode, Episode):
                    self._drain(now_us())
                if self._matcher.waiting == 0:
                    break
            time.sleep(_POLL_S / 5)
        with self._lock:
            self._closing = False
            episode = self._episode
            index = self._next_index()
            if isinstance(episode, Episode):
                self._drain(now_us(), flush=True)
            self._episode, self._matcher = None, None
            task = self._task
            if not isinstance(episode, Episode) or episode.frames == 0:
                if isinstance(episode, Episode):
                    episode.discard()
                response.success, response.message = False, 'episode had no frames (no observation arrived): discarded'
                self.get_logger().warning(response.message)
                self._event('discard', index, task)
                self._publish_state()
                return response
            frames = episode.frames
            span = (episode.first_observation_ts_us, episode.last_observation_ts_us)
            unmatched_before = self._unmatched_base
            future = episode.save()
            self._saving.append(future)
        future.add_done_callback(lambda f, i=index: self._saved(f, i))
        self._event('stop', index, task, span)
        response.success = True
        response.message = f"saving episode {index}: {frames} frames ({frames / self.fps:.1f} s), '{task}'"
        self.get_logger().info(response.message)
        late = self.unmatched_actions - unmatched_before
        if late:
            self.get_logger().warning(
                f'episode {index}: {late} executed action(s) answered no frame (their observation was not recorded, '
                f'or they came more than action_wait_ms={self._wait_us // 1000} after it)'
            )
        self._publish_state()
        return response

    def _saved(self, future: Future, index: int) -> None:
        exc = future.exception()
        with self._lock:
            if future in self._saving:
                self._saving.remove(future)
            if exc is not None:
                self._error = f'episode {index} could not be saved: {exc}'
        if exc is not None:
            self.count('save-failed')
            self.get_logger().error(self._error)
        else:
            result: EpisodeResult = future.result()
            self.get_logger().info(f'episode {result.episode_index} saved: {result.frames} frames in {result.path}')
        self._publish_state()

    def _srv_discard(self, request, response):
        with self._lock:
            if self._matcher is None:
                response.success, response.message = False, 'no episode is recording'
                return response
            if self._closing:
                response.success, response.message = False, 'the episode is being stopped and saved'
                return response
            episode, index, task = self._episode, self._next_index(), self._task
            self._episode, self._matcher = None, None
            if isinstance(episode, Episode):
                episode.discard()
        self._event('discard', index, task)
        response.success, response.message = True, f'episode {index} discarded'
        self.get_logger().info(response.message)
        self._publish_state()
        return response

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            episode = self._episode
            self._episode, self._matcher = None, None
        if isinstance(episode, Episode):
            self.get_logger().warning(f"shutting down while recording: episode '{self._task}' discarded (not stopped)")
            episode.discard()
        if self._writer is not None:
            self._writer.close()  # waits for episodes being saved
        super().shutdown(timeout)


def main(args: Optional[Sequence[str]] = None) -> int:
    return run_node(Recorder, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
