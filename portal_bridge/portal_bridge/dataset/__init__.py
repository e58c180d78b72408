"""Training data: LeRobotDataset v3.0 episodes written from Portal observations and actions.

ROS-free, like :mod:`portal_bridge.portal`: the recorder node, ``bag_to_lerobot`` and the tests
drive the same writer. It needs ``pyarrow`` (parquet) and ``av`` (PyAV, video), which the bridges
themselves do not, so import this package only where a dataset is written or read.
"""

try:
    import av  # noqa: F401
    import pyarrow  # noqa: F401
except ImportError as exc:  # a distro install without them: one line that says what to do
    raise ImportError(
        f'portal_bridge datasets (recorder, bag_to_lerobot) need pyarrow and av (PyAV): {exc}. '
        'Install them with pip in the environment ROS runs in (README, "Recording datasets").'
    ) from exc
