"""A bag of a Portal session into a LeRobotDataset: the recorder's pipeline, fed from a bag.

Reads with ``rosbags`` (MCAP or sqlite3 rosbag2 folders, no ROS install needed):

* ``portal_bridge_msgs/msg/Observation`` (``/recorder/observation``, or an operator_bridge's
  ``~/observation``): one frame each;
* ``portal_bridge_msgs/msg/ExecutedAction`` on a topic ending in ``executed_actions`` (what the
  robot executed, with its sender) and, for shadow evaluation, ``candidate_actions``;
* ``portal_bridge_msgs/msg/EpisodeEvent`` (the recorder's ``~/episode_events``): the episodes.
  Each ``stop`` event names the Portal timestamps of its first and last frame, so a bag of the
  recorder's own topics gives exactly the frames recorded live; ``discard`` drops one.

Without events the bag is one episode, or (``split_on_handoff``) a new episode starts whenever
the sender of the executed actions changes. Matching is :class:`~.matching.FrameMatcher`'s, with
the bag's receive times standing in for the recorder's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import logging
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from .matching import ActionIn, FrameMatcher, ObservationIn
from .schema import DatasetSchema, SchemaError
from .writer import Episode, Frame, LeRobotWriter

__all__ = ['BagError', 'ConversionReport', 'convert_bag']

OBSERVATION = 'portal_bridge_msgs/msg/Observation'
EXECUTED = 'portal_bridge_msgs/msg/ExecutedAction'
EVENT = 'portal_bridge_msgs/msg/EpisodeEvent'
_MSG_FILES = {OBSERVATION: 'Observation', EXECUTED: 'ExecutedAction', EVENT: 'EpisodeEvent'}

log = logging.getLogger(__name__)


class BagError(ValueError):
    """The bag cannot give a dataset (no observations, unknown layout); the message says why."""


@dataclass
class ConversionReport:
    episodes: list[tuple[int, int, str]] = field(default_factory=list)  # (index, frames, task)
    observations: int = 0
    executed_actions: int = 0
    candidate_actions: int = 0
    frames_refused: int = 0
    frames_outside_episodes: int = 0
    unmatched_actions: int = 0
    frames_without_action: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    undecodable: dict[str, int] = field(default_factory=dict)  # per topic

    def refuse(self, why: str) -> None:
        self.frames_refused += 1
        self.refused[why] = self.refused.get(why, 0) + 1


@dataclass(frozen=True)
class _Span:
    first_us: int
    last_us: int
    task: str


def _typestore():
    """A typestore that knows portal_bridge_msgs even when the bag carries no definitions."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    for msgtype, name in _MSG_FILES.items():
        text = _msg_definition(name)
        if text is not None:
            store.register(get_types_from_msg(text, msgtype))
    return store


def _msg_definition(name: str) -> Optional[str]:
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory('portal_bridge_msgs')) / 'msg' / f'{name}.msg')
    except Exception:  # no ROS environment: the bag's own definitions are used
        pass
    candidates.append(Path(__file__).resolve().parents[3] / 'portal_bridge_msgs' / 'msg' / f'{name}.msg')
    for path in candidates:
        if path.is_file():
            return path.read_text()
    return None


def _image(msg) -> np.ndarray:
    if msg.encoding != 'rgb8':
        raise SchemaError(f"image encoding '{msg.encoding}' (observations carry rgb8)")
    row = msg.width * 3
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if msg.step < row or data.size < msg.step * msg.height:
        raise SchemaError(f'image {msg.width}x{msg.height} step {msg.step} holds {data.size} bytes')
    return data[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row].reshape(msg.height, msg.width, 3)


def _action_values(msg, names: Sequence[str]) -> list[float]:
    """The first row of an ExecutedAction in ``names`` order (SchemaError when the names differ)."""
    got = list(msg.names)
    if sorted(got) != sorted(names):
        raise SchemaError(f"action names {got} are not the dataset's {list(names)}")
    row = dict(zip(got, list(msg.values)[: len(got)]))
    return [float(row[n]) for n in names]


class _Bag:
    """The Portal topics of one bag, found by message type (and topic name for actions)."""

    def __init__(self, path: Path, observation_topic: Optional[str]) -> None:
        from rosbags.highlevel import AnyReader

        self.reader = AnyReader([Path(path)], default_typestore=_typestore())
        self.reader.open()
        try:
            self._find(path, observation_topic)
        except BaseException:
            self.reader.close()
            raise

    def _find(self, path: Path, observation_topic: Optional[str]) -> None:
        conns = self.reader.connections
        observations = [c for c in conns if c.msgtype == OBSERVATION]
        if observation_topic:
            observations = [c for c in observations if c.topic == observation_topic]
        topics = sorted({c.topic for c in observations})
        if not topics:
            raise BagError(
                f'{path}: no {OBSERVATION} messages' + (f' on {observation_topic}' if observation_topic else '')
            )
        if len(topics) > 1:
            raise BagError(f'{path}: observations on several topics {topics}; choose one with --observation-topic')
        self.observations = observations
        self.executed = [c for c in conns if c.msgtype == EXECUTED and c.topic.endswith('executed_actions')]
        self.candidates = [c for c in conns if c.msgtype == EXECUTED and c.topic.endswith('candidate_actions')]
        self.events = [c for c in conns if c.msgtype == EVENT]
        self.undecodable: dict[str, int] = {}

    def close(self) -> None:
        self.reader.close()

    def messages(self, conns) -> Iterator[tuple[object, int, object]]:
        """Deserialized messages; one that does not decode (a truncated or lying buffer) is counted, skipped."""
        for conn, timestamp, raw in self.reader.messages(connections=conns):
            try:
                msg = self.reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # rosbags raises several types for malformed CDR
                self.undecodable[conn.topic] = self.undecodable.get(conn.topic, 0) + 1
                if self.undecodable[conn.topic] == 1:
                    log.warning(
                        '%s: a message of %d bytes does not decode (%s); skipped and counted', conn.topic, len(raw), exc
                    )
                continue
            yield conn, timestamp, msg

    def spans(self) -> Optional[list[_Span]]:
        """Episodes from the recorder's stop events (None: the bag has no events)."""
        if not self.events:
            return None
        return [
            _Span(int(m.first_observation_ts_us), int(m.last_observation_ts_us), m.task)
            for _, _, m in self.messages(self.events)
            if m.event == 'stop' and m.first_observation_ts_us
        ]

    def first(self, conns):
        for _, _, msg in self.messages(conns):
            return msg
        return None


def convert_bag(
    bag: Path | str,
    out: Path | str,
    *,
    fps: int = 30,
    task: str = 'recorded session',
    video_codec: str = 'h264',
    candidates: Optional[Sequence[str]] = None,
    action_wait_ms: int = 1000,
    split_on_handoff: bool = False,
    observation_topic: Optional[str] = None,
) -> ConversionReport:
    """Write the bag's episodes to the dataset at ``out`` (created, or appended to)."""
    source = _Bag(Path(bag), observation_topic)
    try:
        return _convert(source, Path(out), fps, task, video_codec, candidates, action_wait_ms, split_on_handoff)
    finally:
        source.close()


def _convert(source: _Bag, out: Path, fps, task, video_codec, candidates, action_wait_ms, split_on_handoff):
    report = ConversionReport()
    first_obs = source.first(source.observations)
    if first_obs is None:
        raise BagError('no observation in the bag decodes')
    first_action = source.first(source.executed) if source.executed else None
    if first_action is None:
        raise BagError('the bag has no executed actions (record ~/executed_actions with action subscription on)')
    state_names = tuple(first_obs.state.name)
    action_names = tuple(first_action.names)
    cameras = tuple((n, img.height, img.width) for n, img in zip(first_obs.camera_names, first_obs.images))
    if candidates is None:
        candidates = sorted({m.sender for _, _, m in source.messages(source.candidates)}) if source.candidates else []
    schema = DatasetSchema(fps, state_names, action_names, cameras, tuple(candidates), video_codec)
    spans = source.spans()
    writer: Optional[LeRobotWriter] = None
    episode: Optional[Episode] = None
    span_index = 0
    sender = ''
    matcher = FrameMatcher(round(1e6 / fps), action_wait_ms * 1000, candidates)

    def episode_task() -> str:
        return spans[span_index].task if spans else task

    def finish() -> None:
        nonlocal episode
        if episode is not None and episode.frames:
            result = episode.save().result()
            report.episodes.append((result.episode_index, result.frames, result.task))
        elif episode is not None:
            episode.discard()
        episode = None

    def take(frames: Iterable[Frame]) -> None:
        nonlocal writer, episode, span_index, sender
        for frame in frames:
            t = frame.observation_ts_us
            if spans is not None:
                while span_index < len(spans) and t > spans[span_index].last_us:
                    finish()
                    span_index += 1
                if span_index >= len(spans) or t < spans[span_index].first_us:
                    report.frames_outside_episodes += 1
                    continue
            elif split_on_handoff and frame.action is not None and sender and frame.action_sender != sender:
                finish()
            if frame.action is not None:
                sender = frame.action_sender
            if writer is None:
                writer = LeRobotWriter(out, schema)
            if episode is None:
                episode = writer.start_episode(episode_task())
            try:
                episode.add(frame)
            except SchemaError as exc:
                report.refuse(str(exc))

    conns = source.observations + source.executed + source.candidates
    executed_ids = {c.id for c in source.executed}
    for conn, log_ns, msg in source.messages(conns):
        now = log_ns // 1000
        if conn.msgtype == OBSERVATION:
            report.observations += 1
            try:
                images = {n: _image(img) for n, img in zip(msg.camera_names, msg.images)}
            except SchemaError as exc:
                report.refuse(str(exc))
                continue
            stamps = dict(zip(msg.camera_names, (int(t) for t in msg.frame_timestamps_us)))
            state = [float(v) for v in msg.state.position]
            matcher.add_observation(ObservationIn(int(msg.timestamp_us), state, images, now, stamps))
        else:
            try:
                values = _action_values(msg, action_names)
            except SchemaError as exc:
                report.refuse(f'executed action: {exc}')
                continue
            record = ActionIn(int(msg.timestamp_us), msg.sender, values, int(msg.in_reply_to_ts_us), now)
            if conn.id in executed_ids:
                report.executed_actions += 1
                matcher.add_executed(record)
            else:
                report.candidate_actions += 1
                matcher.add_candidate(msg.sender, record)
        take(matcher.ready(now))
    take(matcher.flush())
    finish()
    report.undecodable = dict(source.undecodable)
    report.unmatched_actions = matcher.unmatched_actions
    report.frames_without_action = matcher.frames_without_action
    if writer is not None:
        writer.close()
    if not report.episodes:
        raise BagError(f'no frame of the bag fell in an episode ({report.observations} observations read)')
    return report
