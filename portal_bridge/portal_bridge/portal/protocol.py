"""The Portal wire constants in one place: data topics, attribute keys, roles, RPC names and codes.

Everything a peer must agree on by name lives here, so that a reader can see the whole vocabulary
of the protocol at once (byte layouts are in :mod:`.wire`). The ``portal_bridge.*`` names are this
package's extensions; other Portal peers ignore them (see docs/wire_notes.md).
"""

from __future__ import annotations

__all__ = [
    'TOPIC_STATE',
    'TOPIC_ACTION',
    'TOPIC_ACTION_CHUNK',
    'TOPIC_FRAME_VIDEO',
    'TOPIC_RTT',
    'TOPIC_EXECUTED',
    'TOPIC_EXECUTED_CHUNK',
    'ROLE_ATTR',
    'ACTIVE_OPERATOR_ATTR',
    'EXECUTED_ATTR',
    'ROLE_ROBOT',
    'ROLE_OPERATOR',
    'SET_ACTIVE_OPERATOR_RPC',
    'EMERGENCY_STOP_RPC',
    'EMERGENCY_STOP_REFUSED',
    'SET_ACTIVE_OPERATOR_NOT_CONNECTED',
    'SET_ACTIVE_OPERATOR_WRITE_FAILED',
    'SET_ACTIVE_OPERATOR_REFUSED',
    'RPC_APPLICATION_ERROR',
]

# Data topics (LiveKit data packets and byte streams).
TOPIC_STATE = 'portal_state'
TOPIC_ACTION = 'portal_action'
TOPIC_ACTION_CHUNK = 'portal_action_chunk'
TOPIC_FRAME_VIDEO = 'portal_frame_video'
TOPIC_RTT = 'portal_rtt'
# Extension: the robot re-broadcasts what it executed.
TOPIC_EXECUTED = 'portal_bridge_executed'
TOPIC_EXECUTED_CHUNK = 'portal_bridge_executed_chunk'

# Participant attributes.
ROLE_ATTR = 'lk.portal.role'
ACTIVE_OPERATOR_ATTR = 'lk.portal.active_operator'
EXECUTED_ATTR = 'portal_bridge.executed'  # extension: the robot re-broadcasts executed actions
ROLE_ROBOT = 'robot'
ROLE_OPERATOR = 'operator'

# RPC methods and their error codes (2001 and 2002 are Portal's; 2003 and 2004 are ours; 1500 is LiveKit's
# application error).
SET_ACTIVE_OPERATOR_RPC = 'portal.set_active_operator'
SET_ACTIVE_OPERATOR_NOT_CONNECTED = 2001
SET_ACTIVE_OPERATOR_WRITE_FAILED = 2002
SET_ACTIVE_OPERATOR_REFUSED = 2003
RPC_APPLICATION_ERROR = 1500
# Extension: an operator (or a supervisor) latches the robot's local emergency stop. Other peers
# neither serve nor call it; robot_bridge answers it like its own emergency_stop service.
EMERGENCY_STOP_RPC = 'portal_bridge.emergency_stop'
EMERGENCY_STOP_REFUSED = 2004
