"""ROS-side helpers of the nodes.

Message conversion (images, joints, stamps), QoS, parameters, diagnostics, logging, the thread
hand-offs (frame workers, service host), input health, credentials, the Fast DDS profile and the
launch-file plumbing.
"""
