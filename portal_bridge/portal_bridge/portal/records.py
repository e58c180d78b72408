"""What sessions deliver: states, actions, chunks and observations, typed and raw.

Each record carries the values typed by their declared dtype (``values``: bool, int or float)
and the lossless f64 view (``raw_values``), plus the Portal timestamps. ``sender`` on actions is
the identity that passed the active-operator gate, fixed at gate time: the only label a
recording can trust across a handoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .frames import VideoFrame
from .wire.dtypes import typed_value
from .wire.schema import FieldSpec

__all__ = ['State', 'Action', 'ActionChunk', 'Observation', 'typed_map']


def typed_map(fields: Sequence[FieldSpec], raw: Sequence[float]) -> dict[str, bool | int | float]:
    return {f.name: typed_value(f.dtype, v) for f, v in zip(fields, raw)}


class _RawValues:
    """``raw_values``: the f64 values by field name (for records with ``names`` and ``raw``)."""

    __slots__ = ()

    @property
    def raw_values(self) -> dict[str, float]:
        return dict(zip(self.names, self.raw))


@dataclass(frozen=True, slots=True)
class State(_RawValues):
    """A robot state: ``raw`` holds the f64 values in contract order."""

    values: dict[str, bool | int | float]
    raw: tuple[float, ...]
    timestamp_us: int
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Action(_RawValues):
    """An action that passed the gate (or a self-echo); ``in_reply_to_ts_us`` None when unset."""

    values: dict[str, bool | int | float]
    raw: tuple[float, ...]
    timestamp_us: int
    sender: str
    in_reply_to_ts_us: Optional[int]
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionChunk:
    """A ``(horizon, n_fields)`` action chunk; ``data`` columns are typed numpy arrays."""

    name: str
    horizon: int
    data: dict[str, np.ndarray]
    timestamp_us: int
    sender: str
    in_reply_to_ts_us: Optional[int]

    @property
    def raw_data(self) -> dict[str, list[float]]:
        return {k: [float(x) for x in np.asarray(v, dtype=np.float64)] for k, v in self.data.items()}

    def matrix(self) -> np.ndarray:
        """f64 ``(horizon, n_fields)`` in field order."""
        if not self.data:
            return np.zeros((self.horizon, 0))
        return np.stack([np.asarray(v, dtype=np.float64) for v in self.data.values()], axis=1)


@dataclass(frozen=True, slots=True)
class Observation:
    """A state with one frame per included track. ``timestamp_us`` is the state's timestamp."""

    state: State
    frames: dict[str, VideoFrame]
    timestamp_us: int
    stale: frozenset[str] = frozenset()
    omitted: tuple[str, ...] = ()
    match_delta_us: int = 0
    received_ns: int = field(default=0, compare=False)

    @property
    def raw_state(self) -> dict[str, float]:
        return self.state.raw_values
