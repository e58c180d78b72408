#!/usr/bin/env bash
# Placeholder until the ROS nodes land: says what is missing.
echo "make demo needs robot_bridge, operator_bridge and the simulated robot, which are not built yet." >&2
exit 1
