"""Conversions between ROS time stamps and Portal timestamps (µs since the Unix epoch)."""

from __future__ import annotations

from builtin_interfaces.msg import Duration, Time


def stamp_to_us(stamp: Time) -> int:
    """Microseconds of a ``builtin_interfaces/Time`` (0 for an unset stamp)."""
    return stamp.sec * 1_000_000 + stamp.nanosec // 1000


def us_to_stamp(us: int) -> Time:
    sec, rem = divmod(int(us), 1_000_000)
    return Time(sec=sec, nanosec=rem * 1000)


def stamp_to_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def seconds_to_duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
