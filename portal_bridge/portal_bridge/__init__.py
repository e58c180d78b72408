"""portal_bridge: a ROS 2 bridge into LiveKit Portal sessions.

The protocol itself lives in :mod:`portal_bridge.portal`, which never imports rclpy, so it can be
used and tested from plain Python. ROS adapters and nodes sit on top of it.
"""

__version__ = '0.1.0'
