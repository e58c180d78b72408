"""What each peer decides for itself, apart from what the peers agree on in the wire contract.

``portal.yaml`` carries ``slack``, ``ping_ms`` and ``action_subscription`` next to the wire
contract, as livekit-portal's file does, but none of them is part of a fingerprint or of anything
the other side reads: each is this peer's own choice. A session takes its settings from the
contract's values unless given its own (``operator_bridge`` passes its ``sync_slack`` and
``action_subscription`` parameters this way), so the contract it holds stays the document both
sides loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ['PeerSettings']


@dataclass(frozen=True)
class PeerSettings:
    """One peer's own knobs (not on the wire).

    ``slack``: ticks of video and states the operator's sync buffers (latency it may add to cover
    late packets). ``ping_ms``: how often this peer measures RTT (0: never). ``action_subscription``:
    whether an operator receives the actions the robot executed.
    """

    slack: int = 5
    ping_ms: int = 1000
    action_subscription: bool = False

    @classmethod
    def of(cls, contract, **overrides: Optional[object]) -> PeerSettings:
        """The contract's values, with every override that is not None applied (and checked)."""
        values = {
            'slack': contract.slack,
            'ping_ms': contract.ping_ms,
            'action_subscription': contract.action_subscription,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {'slack', 'ping_ms', 'action_subscription'}
        if unknown:
            raise TypeError(f'unknown peer settings {sorted(unknown)}')
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ValueError naming the setting that is out of range."""
        if isinstance(self.slack, bool) or not isinstance(self.slack, int) or self.slack < 1:
            raise ValueError(f'slack must be a positive integer, got {self.slack!r}')
        if isinstance(self.ping_ms, bool) or not isinstance(self.ping_ms, int) or self.ping_ms < 0:
            raise ValueError(f'ping_ms must be a non-negative integer, got {self.ping_ms!r}')
        if not isinstance(self.action_subscription, bool):
            raise ValueError(f'action_subscription must be a bool, got {self.action_subscription!r}')
