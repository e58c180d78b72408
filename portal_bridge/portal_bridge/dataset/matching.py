"""Pairing each observation with the action the robot executed in answer to it.

The rule (docs/recording.md): an executed action answers the observation whose Portal timestamp
its ``in_reply_to_ts_us`` names, when the operator set it; otherwise the first executed action
stamped within one tick after the observation (``T <= action < T + 1/fps``). Each executed action
answers at most one observation. Actions and observations travel different paths (the robot's
echo versus the operator's video), so either may arrive first: both wait here up to ``wait_us``
(recorder clock) for their partner. An observation that waited that long without one becomes a
frame without an action; an executed action that answered nothing is counted as unmatched.
Candidates' actions (shadow evaluation) are matched to frames by the same rule, one per
candidate and frame. An executed chunk contributes its first row: the action executed at once.

Frames come out in observation order, so a dataset's frame index follows robot time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from .writer import Frame

__all__ = ['ActionIn', 'FrameMatcher', 'ObservationIn']


@dataclass(frozen=True)
class ObservationIn:
    timestamp_us: int
    state: Sequence[float]
    images: Mapping[str, np.ndarray]
    received_us: int = 0
    frame_timestamps_us: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionIn:
    timestamp_us: int
    sender: str
    values: Sequence[float]
    in_reply_to_ts_us: int = 0  # 0: not correlated
    received_us: int = 0


@dataclass
class _Pending:
    obs: ObservationIn
    action: Optional[ActionIn] = None
    candidates: dict[str, ActionIn] = field(default_factory=dict)


class FrameMatcher:
    """Observations and actions in (any order, within ``wait_us``), matched frames out in order."""

    def __init__(self, tick_us: int, wait_us: int, candidates: Sequence[str] = ()) -> None:
        self.tick_us, self.wait_us = tick_us, wait_us
        self.candidates = tuple(candidates)
        self._frames: deque[_Pending] = deque()
        self._by_ts: dict[int, _Pending] = {}
        self._actions: deque[ActionIn] = deque()  # executed, not yet matched
        self._proposals: deque[tuple[str, ActionIn]] = deque()  # candidates', not yet matched
        self.matched_by_reply = 0
        self.matched_by_time = 0
        self.unmatched_actions = 0
        self.unmatched_candidate_actions = 0
        self.frames_without_action = 0

    def add_observation(self, obs: ObservationIn) -> None:
        if obs.timestamp_us in self._by_ts:
            return  # a repeat of the same state: one frame per observation
        pending = _Pending(obs)
        self._frames.append(pending)
        self._by_ts[obs.timestamp_us] = pending
        self._match_waiting()

    def add_executed(self, action: ActionIn) -> None:
        if not self._place(action, None):
            self._actions.append(action)

    def add_candidate(self, identity: str, action: ActionIn) -> None:
        if identity not in self.candidates:
            return
        if not self._place(action, identity):
            self._proposals.append((identity, action))

    def ready(self, now_us: int) -> list[Frame]:
        """Frames that are matched, or whose wait is over, in observation order."""
        out = []
        while self._frames:
            head = self._frames[0]
            done = head.action is not None and all(c in head.candidates for c in self.candidates)
            if not done and now_us - head.obs.received_us < self.wait_us:
                break
            out.append(self._emit(self._frames.popleft()))
        self._expire(now_us)
        return out

    def flush(self) -> list[Frame]:
        """Everything still waiting, as frames (at the end of an episode)."""
        out = [self._emit(p) for p in self._frames]
        self._frames.clear()
        self.unmatched_actions += len(self._actions)
        self.unmatched_candidate_actions += len(self._proposals)
        self._actions.clear()
        self._proposals.clear()
        return out

    @property
    def waiting(self) -> int:
        return len(self._frames)

    # -- matching ---------------------------------------------------------------------------------
    def _slot(self, pending: _Pending, identity: Optional[str]) -> bool:
        return pending.action is None if identity is None else identity not in pending.candidates

    def _target(self, action: ActionIn, identity: Optional[str]) -> Optional[_Pending]:
        if action.in_reply_to_ts_us:
            pending = self._by_ts.get(action.in_reply_to_ts_us)
            return pending if pending is not None and self._slot(pending, identity) else None
        for pending in self._frames:
            t = pending.obs.timestamp_us
            if t <= action.timestamp_us < t + self.tick_us and self._slot(pending, identity):
                return pending
        return None

    def _place(self, action: ActionIn, identity: Optional[str]) -> bool:
        pending = self._target(action, identity)
        if pending is None:
            return False
        if identity is None:
            pending.action = action
            if action.in_reply_to_ts_us:
                self.matched_by_reply += 1
            else:
                self.matched_by_time += 1
        else:
            pending.candidates[identity] = action
        return True

    def _match_waiting(self) -> None:
        for queue, identity_of in ((self._actions, None), (self._proposals, 0)):
            keep: deque = deque()
            for item in queue:
                identity, action = (None, item) if identity_of is None else item
                if not self._place(action, identity):
                    keep.append(item)
            queue.clear()
            queue.extend(keep)

    def _expire(self, now_us: int) -> None:
        while self._actions and now_us - self._actions[0].received_us >= self.wait_us:
            self._actions.popleft()
            self.unmatched_actions += 1
        while self._proposals and now_us - self._proposals[0][1].received_us >= self.wait_us:
            self._proposals.popleft()
            self.unmatched_candidate_actions += 1

    def _emit(self, pending: _Pending) -> Frame:
        self._by_ts.pop(pending.obs.timestamp_us, None)
        a = pending.action
        if a is None:
            self.frames_without_action += 1
        return Frame(
            pending.obs.state,
            pending.obs.images,
            pending.obs.timestamp_us,
            a.values if a is not None else None,
            a.timestamp_us if a is not None else 0,
            a.sender if a is not None else '',
            {c: act.values for c, act in pending.candidates.items()},
            pending.obs.frame_timestamps_us,
        )
