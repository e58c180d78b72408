"""Subscription QoS that matches the publishers actually on the graph.

A RELIABLE subscription never connects to a BEST_EFFORT publisher and a TRANSIENT_LOCAL one never
connects to a VOLATILE publisher, silently. Like foxglove_bridge and ros-portal, ask for RELIABLE
only if every publisher is reliable and TRANSIENT_LOCAL only if every publisher is; with no
publisher yet, BEST_EFFORT/VOLATILE, which connects to anything.
"""

from __future__ import annotations

from typing import Callable, Optional

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

try:  # Jazzy and later
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks  # type: ignore[no-redef]

__all__ = ['QOS_MODES', 'subscription_qos', 'incompatible_qos_callbacks']

QOS_MODES = ('auto', 'reliable', 'best_effort')


def subscription_qos(node: Node, topic: str, mode: str = 'auto', min_depth: int = 1, max_depth: int = 25) -> QoSProfile:
    if mode not in QOS_MODES:
        raise ValueError(f"qos mode '{mode}' must be one of {', '.join(QOS_MODES)}")
    publishers = node.get_publishers_info_by_topic(node.resolve_topic_name(topic))
    depth = sum(max(p.qos_profile.depth, 1) for p in publishers) or 5
    depth = min(max(depth, min_depth), max_depth)
    if mode == 'reliable':
        reliability = ReliabilityPolicy.RELIABLE
    elif mode == 'best_effort' or not publishers:
        reliability = ReliabilityPolicy.BEST_EFFORT
    else:
        all_reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
        reliability = ReliabilityPolicy.RELIABLE if all_reliable else ReliabilityPolicy.BEST_EFFORT
    all_latched = bool(publishers) and all(
        p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers
    )
    durability = DurabilityPolicy.TRANSIENT_LOCAL if all_latched else DurabilityPolicy.VOLATILE
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=reliability, durability=durability)


def incompatible_qos_callbacks(
    on_incompatible: Callable[[object], None],
) -> Optional[SubscriptionEventCallbacks]:
    """Event callbacks that report incompatible QoS offered by a publisher."""
    return SubscriptionEventCallbacks(incompatible_qos=on_incompatible)
