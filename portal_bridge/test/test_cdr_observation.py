"""Observation and Image bytes built here deserialize to exactly the messages the Python path builds."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image

from portal_bridge.portal import Observation, State, VideoFrame
from portal_bridge.ros.cdr_observation import image_to_cdr, observation_to_cdr
from portal_bridge.ros.observation_msgs import frame_to_image, observation_to_msg
from portal_bridge_msgs.msg import Observation as ObservationMsg

names = st.text(alphabet=st.characters(blacklist_characters='\x00', blacklist_categories=('Cs',)), max_size=10)
stamps = st.integers(50_000, (2**31 - 1) * 1_000_000 - 50_000)  # int32 seconds, as builtin_interfaces/Time


@st.composite
def frames(draw, stamp):
    w, h = draw(st.integers(1, 7)), draw(st.integers(1, 5))
    data = draw(st.binary(min_size=w * h * 3, max_size=w * h * 3))
    kind = draw(st.sampled_from(['bytes', 'numpy', 'memoryview']))
    buf = {'bytes': data, 'numpy': np.frombuffer(data, np.uint8).reshape(h, w, 3), 'memoryview': memoryview(data)}[kind]
    return VideoFrame(w, h, buf, stamp + draw(st.integers(-50_000, 50_000)))


@st.composite
def observations(draw):
    ts = draw(stamps)
    n = draw(st.integers(0, 6))
    state_names = draw(st.lists(names, min_size=n, max_size=n))
    raw = tuple(draw(st.lists(st.floats(allow_nan=False), min_size=n, max_size=n)))
    tracks = draw(st.lists(st.text(alphabet='abcdefghij_', min_size=1, max_size=8), max_size=4, unique=True))
    present = [t for t in tracks if draw(st.booleans())]
    obs = Observation(
        State({}, raw, ts, tuple(state_names)),
        {t: draw(frames(ts)) for t in present},
        ts,
        frozenset(t for t in present if draw(st.booleans())),
        tuple(t for t in tracks if t not in present),
        draw(st.integers(0, 2**63)),
    )
    return obs, tracks, state_names, draw(names)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observations())
def test_observation_bytes_are_the_message(case):
    obs, tracks, state_names, robot = case
    ours = deserialize_message(observation_to_cdr(obs, tracks, state_names, robot), ObservationMsg)
    assert ours == observation_to_msg(obs, tracks, state_names, robot)


@settings(max_examples=200, deadline=None)
@given(stamps.flatmap(frames), names)
def test_image_bytes_are_the_message(frame, camera):
    assert deserialize_message(image_to_cdr(frame, camera), Image) == frame_to_image(frame, camera)


def test_a_frame_whose_buffer_does_not_match_its_size_is_refused():
    with pytest.raises(ValueError, match='needs 12'):
        image_to_cdr(VideoFrame(2, 2, b'\x00' * 11, 1), 'cam')
