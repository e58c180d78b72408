"""Portal deliveries as ROS messages: Observation, per-camera Image, JointState, ExecutedAction."""

from __future__ import annotations

import array
from typing import Sequence

from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from portal_bridge_msgs.msg import ExecutedAction, Observation

from ..portal import Action, ActionChunk, State, VideoFrame
from ..portal import Observation as PortalObservation
from .images import rgb_to_image
from .stamps import us_to_stamp

__all__ = [
    'observation_to_msg',
    'frame_to_image',
    'state_to_joint_state',
    'executed_action',
    'executed_chunk',
]


def frame_to_image(frame: VideoFrame, camera: str) -> Image:
    """An rgb8 Image stamped with the frame's own capture time; frame_id is the camera name."""
    return rgb_to_image(
        frame.data, frame.width, frame.height, Header(stamp=us_to_stamp(frame.timestamp_us), frame_id=camera)
    )


def state_to_joint_state(state: State, names: Sequence[str], frame_id: str = '') -> JointState:
    msg = JointState(header=Header(stamp=us_to_stamp(state.timestamp_us), frame_id=frame_id), name=list(names))
    msg.position = array.array('d', state.raw)
    return msg


def observation_to_msg(
    obs: PortalObservation, track_order: Sequence[str], state_names: Sequence[str], robot_identity: str
) -> Observation:
    header = Header(stamp=us_to_stamp(obs.timestamp_us), frame_id=robot_identity)
    msg = Observation(header=header, timestamp_us=obs.timestamp_us, match_delta_us=obs.match_delta_us)
    msg.state = state_to_joint_state(obs.state, state_names, robot_identity)
    names, images, stamps, stale = [], [], [], []
    for name in track_order:
        frame = obs.frames.get(name)
        if frame is None:
            continue
        names.append(name)
        images.append(frame_to_image(frame, name))
        stamps.append(frame.timestamp_us)
        stale.append(name in obs.stale)
    msg.camera_names = names
    msg.images = images
    msg.frame_timestamps_us = array.array('Q', stamps)
    msg.stale = stale
    msg.omitted_cameras = list(obs.omitted)
    return msg


def executed_action(action: Action, robot_identity: str) -> ExecutedAction:
    msg = ExecutedAction(
        header=Header(stamp=us_to_stamp(action.timestamp_us), frame_id=robot_identity),
        sender=action.sender,
        timestamp_us=action.timestamp_us,
        in_reply_to_ts_us=action.in_reply_to_ts_us or 0,
        chunk='',
        rows=1,
        names=list(action.names),
    )
    msg.values = array.array('d', action.raw)
    return msg


def executed_chunk(chunk: ActionChunk, robot_identity: str) -> ExecutedAction:
    matrix = chunk.matrix()
    msg = ExecutedAction(
        header=Header(stamp=us_to_stamp(chunk.timestamp_us), frame_id=robot_identity),
        sender=chunk.sender,
        timestamp_us=chunk.timestamp_us,
        in_reply_to_ts_us=chunk.in_reply_to_ts_us or 0,
        chunk=chunk.name,
        rows=chunk.horizon,
        names=list(chunk.data),
    )
    msg.values = array.array('d', matrix.reshape(-1).tolist())
    return msg
