"""What a dataset holds: its features (LeRobotDataset v3.0 ``meta/info.json``) and video codecs.

A dataset's schema is fixed when its first episode starts: the contract's state and action
names, each camera's frame size (learned from the first observation, since the wire contract
does not carry it), the candidate identities for shadow evaluation, and the video codec. A
dataset that is resumed must have the same schema; :meth:`DatasetSchema.mismatch` says how it
differs, so a recorder can refuse with a clear message instead of writing a mixed dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = [
    'CODEBASE_VERSION',
    'VIDEO_CODECS',
    'VideoCodec',
    'DatasetSchema',
    'SchemaError',
    'camera_key',
    'candidate_key',
]

CODEBASE_VERSION = 'v3.0'
STATE = 'observation.state'
ACTION = 'action'
OBSERVATION_TS = 'observation.timestamp_us'
FRAME_TS = 'observation.frame_timestamps_us'
ACTION_TS = 'action.timestamp_us'
ACTION_SENDER = 'action.sender'
ACTION_MATCHED = 'action.matched'
# lerobot adds these to every dataset; their order in info.json follows the user features.
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    'timestamp': {'dtype': 'float32', 'shape': [1], 'names': None},
    'frame_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'episode_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'task_index': {'dtype': 'int64', 'shape': [1], 'names': None},
}


class SchemaError(ValueError):
    """A dataset, an episode or a frame does not fit the schema; the message says how."""


def camera_key(camera: str) -> str:
    return f'observation.images.{camera}'


def candidate_key(identity: str) -> str:
    return f'action.candidate.{identity}'


@dataclass(frozen=True)
class VideoCodec:
    """One way to encode a camera: the FFmpeg encoder, its pixel format and options."""

    name: str
    encoder: str  # FFmpeg encoder name (PyAV)
    codec: str  # what info.json's video.codec says
    pix_fmt: str
    options: Mapping[str, str]
    lossless: bool = False


# One registry of the codecs a recorder offers (parameter ``video_codec``). g=2 (a keyframe every
# second frame) is lerobot's default too: training samples random frames, and a short GOP keeps
# each decode to one or two frames.
VIDEO_CODECS: dict[str, VideoCodec] = {
    c.name: c
    for c in (
        VideoCodec('h264', 'libx264', 'h264', 'yuv420p', {'crf': '20', 'preset': 'veryfast', 'g': '2'}),
        VideoCodec('h264-lossless', 'libx264rgb', 'h264', 'rgb24', {'qp': '0', 'preset': 'veryfast', 'g': '2'}, True),
        VideoCodec('av1', 'libsvtav1', 'av1', 'yuv420p', {'crf': '30', 'preset': '12', 'g': '2'}),
    )
}


@dataclass(frozen=True)
class DatasetSchema:
    """The features of one dataset, in the order they appear in ``meta/info.json``."""

    fps: int
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    cameras: tuple[tuple[str, int, int], ...] = ()  # (name, height, width), contract track order
    candidates: tuple[str, ...] = ()
    video_codec: str = 'h264'
    robot_type: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise SchemaError(f'fps must be positive, got {self.fps}')
        if self.video_codec not in VIDEO_CODECS:
            raise SchemaError(f"unknown video codec '{self.video_codec}' (one of {', '.join(VIDEO_CODECS)})")
        for name, height, width in self.cameras:
            if height <= 0 or width <= 0:
                raise SchemaError(f"camera '{name}' has no size ({width}x{height})")
            if VIDEO_CODECS[self.video_codec].pix_fmt == 'yuv420p' and (height % 2 or width % 2):
                raise SchemaError(
                    f"camera '{name}' is {width}x{height}: {self.video_codec} (yuv420p) needs even sizes; "
                    'use video_codec h264-lossless'
                )

    @property
    def codec(self) -> VideoCodec:
        return VIDEO_CODECS[self.video_codec]

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self.cameras)

    def camera_shape(self, camera: str) -> tuple[int, int]:
        for name, height, width in self.cameras:
            if name == camera:
                return height, width
        raise SchemaError(f"camera '{camera}' is not in the dataset ({', '.join(self.camera_names)})")

    def video_keys(self) -> list[str]:
        return [camera_key(c) for c in self.camera_names]

    def features(self) -> dict[str, dict[str, Any]]:
        """The ``features`` of ``meta/info.json``."""
        n_state, n_action = len(self.state_names), len(self.action_names)
        out: dict[str, dict[str, Any]] = {
            STATE: {'dtype': 'float32', 'shape': [n_state], 'names': list(self.state_names)},
            ACTION: {'dtype': 'float32', 'shape': [n_action], 'names': list(self.action_names)},
        }
        codec = self.codec
        for name, height, width in self.cameras:
            out[camera_key(name)] = {
                'dtype': 'video',
                'shape': [height, width, 3],
                'names': ['height', 'width', 'channels'],
                'info': {
                    'video.height': height,
                    'video.width': width,
                    'video.codec': codec.codec,
                    'video.pix_fmt': codec.pix_fmt,
                    'video.fps': self.fps,
                    'video.channels': 3,
                    'has_audio': False,
                    'video.is_lossless': codec.lossless,
                    'is_depth_map': False,
                },
            }
        out[OBSERVATION_TS] = {'dtype': 'int64', 'shape': [1], 'names': None}
        if self.cameras:
            out[FRAME_TS] = {'dtype': 'int64', 'shape': [len(self.cameras)], 'names': list(self.camera_names)}
        out[ACTION_TS] = {'dtype': 'int64', 'shape': [1], 'names': None}
        out[ACTION_SENDER] = {'dtype': 'string', 'shape': [1], 'names': None}
        out[ACTION_MATCHED] = {'dtype': 'bool', 'shape': [1], 'names': None}
        for identity in self.candidates:
            out[candidate_key(identity)] = {'dtype': 'float32', 'shape': [n_action], 'names': list(self.action_names)}
        out.update({k: dict(v) for k, v in DEFAULT_FEATURES.items()})
        return out

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> DatasetSchema:
        """The schema a dataset on disk was written with (``meta/info.json``)."""
        if info.get('codebase_version') != CODEBASE_VERSION:
            raise SchemaError(f'dataset is {info.get("codebase_version")!r}, this writer writes {CODEBASE_VERSION}')
        feats = info['features']
        try:
            state = tuple(feats[STATE]['names'])
            action = tuple(feats[ACTION]['names'])
        except KeyError as exc:
            raise SchemaError(f'dataset has no {exc} feature: it was not written from Portal observations') from None
        cameras, codec_name = [], 'h264'
        for key, ft in feats.items():
            if ft.get('dtype') == 'video' and key.startswith('observation.images.'):
                height, width = ft['shape'][:2]
                cameras.append((key[len('observation.images.') :], int(height), int(width)))
                vi = ft.get('info', {})
                codec_name = next(
                    (
                        c.name
                        for c in VIDEO_CODECS.values()
                        if c.codec == vi.get('video.codec')
                        and c.pix_fmt == vi.get('video.pix_fmt')
                        and c.lossless == bool(vi.get('video.is_lossless', False))
                    ),
                    codec_name,
                )
        prefix = 'action.candidate.'
        candidates = tuple(k[len(prefix) :] for k in feats if k.startswith(prefix))
        return cls(int(info['fps']), state, action, tuple(cameras), candidates, codec_name, info.get('robot_type'))

    def mismatch(self, other: DatasetSchema) -> list[str]:
        """What differs between two schemas, one phrase per difference (empty: the same)."""
        out = []
        for what in ('fps', 'state_names', 'action_names', 'cameras', 'candidates', 'video_codec'):
            a, b = getattr(self, what), getattr(other, what)
            if a != b:
                out.append(f'{what} {b!r} (dataset has {a!r})')
        return out
