"""Unit tests of portal_bridge.qos: the subscription QoS chosen from the publishers on a topic.

subscription_qos is a pure decision over what the graph reports, so a small stand-in with the two
node methods it calls (resolve_topic_name, get_publishers_info_by_topic) replaces a real node.
"""

from types import SimpleNamespace

import pytest
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from portal_bridge.ros.qos import QOS_MODES, incompatible_qos_callbacks, subscription_qos

try:  # Jazzy and later
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

RELIABLE = ReliabilityPolicy.RELIABLE
BEST_EFFORT = ReliabilityPolicy.BEST_EFFORT
VOLATILE = DurabilityPolicy.VOLATILE
TRANSIENT_LOCAL = DurabilityPolicy.TRANSIENT_LOCAL


class GraphStandIn:
    """Answers the two graph queries subscription_qos makes, and records them."""

    def __init__(self, *profiles: QoSProfile, namespace: str = '/robot') -> None:
        self.profiles = profiles
        self.namespace = namespace
        self.queried: list[str] = []

    def resolve_topic_name(self, topic: str) -> str:
        return topic if topic.startswith('/') else f'{self.namespace}/{topic}'

    def get_publishers_info_by_topic(self, topic: str):
        self.queried.append(topic)
        return [SimpleNamespace(qos_profile=p) for p in self.profiles]


def pub(reliability=RELIABLE, durability=VOLATILE, depth: int = 10) -> QoSProfile:
    # Graph queries report depth 0 for KEEP_ALL publishers.
    history = HistoryPolicy.KEEP_ALL if depth == 0 else HistoryPolicy.KEEP_LAST
    return QoSProfile(history=history, depth=depth, reliability=reliability, durability=durability)


def test_no_publishers_connects_to_anything():
    qos = subscription_qos(GraphStandIn(), '/camera/image')
    assert qos.reliability == BEST_EFFORT
    assert qos.durability == VOLATILE
    assert qos.history == HistoryPolicy.KEEP_LAST
    assert qos.depth == 5


def test_publishers_are_looked_up_under_the_resolved_name():
    node = GraphStandIn(pub())
    subscription_qos(node, 'joint_states')
    assert node.queried == ['/robot/joint_states']


@pytest.mark.parametrize(
    ('publishers', 'expected'),
    [
        ([pub(RELIABLE)], RELIABLE),
        ([pub(RELIABLE), pub(RELIABLE), pub(RELIABLE)], RELIABLE),
        ([pub(RELIABLE), pub(BEST_EFFORT)], BEST_EFFORT),
        ([pub(BEST_EFFORT), pub(RELIABLE)], BEST_EFFORT),
        ([pub(BEST_EFFORT)], BEST_EFFORT),
    ],
)
def test_auto_reliability(publishers, expected):
    assert subscription_qos(GraphStandIn(*publishers), '/t').reliability == expected


@pytest.mark.parametrize(
    ('publishers', 'expected'),
    [
        ([pub(durability=TRANSIENT_LOCAL)], TRANSIENT_LOCAL),
        ([pub(durability=TRANSIENT_LOCAL), pub(BEST_EFFORT, TRANSIENT_LOCAL)], TRANSIENT_LOCAL),
        ([pub(durability=TRANSIENT_LOCAL), pub(durability=VOLATILE)], VOLATILE),
        ([pub(durability=VOLATILE)], VOLATILE),
    ],
)
def test_durability_is_transient_local_only_if_every_publisher_is(publishers, expected):
    assert subscription_qos(GraphStandIn(*publishers), '/t').durability == expected


@pytest.mark.parametrize(
    ('mode', 'publishers', 'expected'),
    [
        ('reliable', [], RELIABLE),
        ('reliable', [pub(RELIABLE), pub(BEST_EFFORT)], RELIABLE),
        ('reliable', [pub(BEST_EFFORT)], RELIABLE),
        ('best_effort', [pub(RELIABLE)], BEST_EFFORT),
        ('best_effort', [pub(RELIABLE), pub(RELIABLE)], BEST_EFFORT),
        ('auto', [pub(RELIABLE), pub(RELIABLE)], RELIABLE),
    ],
)
def test_mode_overrides_reliability(mode, publishers, expected):
    assert subscription_qos(GraphStandIn(*publishers), '/t', mode=mode).reliability == expected


@pytest.mark.parametrize('mode', ['reliable', 'best_effort'])
def test_mode_does_not_change_durability(mode):
    node = GraphStandIn(pub(durability=TRANSIENT_LOCAL), pub(BEST_EFFORT, TRANSIENT_LOCAL))
    assert subscription_qos(node, '/t', mode=mode).durability == TRANSIENT_LOCAL


@pytest.mark.parametrize(
    ('depths', 'min_depth', 'max_depth', 'expected'),
    [
        ([10, 7], 1, 25, 17),
        ([3], 1, 25, 3),
        ([20, 20], 1, 25, 25),  # clamped to max_depth
        ([20, 20], 1, 100, 40),
        ([1], 5, 25, 5),  # clamped to min_depth
        ([1, 1], 1, 25, 2),
        ([0, 0], 1, 25, 2),  # a depth of 0 (KEEP_ALL publishers) counts as one
        ([], 1, 25, 5),
        ([], 8, 25, 8),
        ([], 1, 3, 3),
    ],
)
def test_depth_is_the_sum_of_publisher_depths_clamped(depths, min_depth, max_depth, expected):
    node = GraphStandIn(*[pub(depth=d) for d in depths])
    qos = subscription_qos(node, '/t', min_depth=min_depth, max_depth=max_depth)
    assert qos.depth == expected


@pytest.mark.parametrize('mode', ['', 'RELIABLE', 'auto ', 'reliable_only', 'besteffort'])
def test_bad_mode(mode):
    node = GraphStandIn(pub())
    with pytest.raises(ValueError, match='qos mode'):
        subscription_qos(node, '/t', mode=mode)
    assert node.queried == []


def test_modes_listed():
    assert set(QOS_MODES) == {'auto', 'reliable', 'best_effort'}


def test_incompatible_qos_callbacks():
    seen = []

    def on_incompatible(event):
        seen.append(event)

    callbacks = incompatible_qos_callbacks(on_incompatible)
    assert isinstance(callbacks, SubscriptionEventCallbacks)
    assert callbacks.incompatible_qos is on_incompatible
    assert callbacks.deadline is None
    assert callbacks.liveliness is None
    callbacks.incompatible_qos('event')
    assert seen == ['event']
