"""What robot_bridge may publish to the controller.

The safety state machine (plain Python) and the clocked, locked command output around it. The
command types themselves are in :mod:`portal_bridge.commands`.
"""
