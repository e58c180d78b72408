"""Training data: LeRobotDataset v3.0 episodes written from Portal observations and actions.

ROS-free, like :mod:`portal_bridge.portal`: the recorder node, ``bag_to_lerobot`` and the tests
drive the same writer. It needs ``pyarrow`` (parquet) and ``av`` (PyAV, video), which the bridges
themselves do not, so import this package only where a dataset is written or read.
"""
