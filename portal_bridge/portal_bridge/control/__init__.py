"""What robot_bridge may publish to the controller: the safety state machine (plain Python) and the
clocked, locked command output around it. Command types themselves are in :mod:`..commands`.
"""
