"""The executables' main(): what it keeps out of the output."""

import sys

from portal_bridge.nodes.node_main import _without_sdk_double_release


def test_only_the_sdk_double_release_is_kept_quiet():
    seen = []

    class FfiHandle:  # the SDK's finalizer, failing as it does after a room closed
        def __del__(self):
            raise AssertionError

    FfiHandle.__del__.__module__ = 'livekit.rtc._ffi_client'
    FfiHandle.__del__.__qualname__ = 'FfiHandle.__del__'

    class Anything:
        def __del__(self):
            raise AssertionError

    previous = sys.unraisablehook
    sys.unraisablehook = _without_sdk_double_release(seen.append)
    try:
        FfiHandle()
        Anything()
    finally:
        sys.unraisablehook = previous
    assert [u.object.__qualname__ for u in seen] == [
        'test_only_the_sdk_double_release_is_kept_quiet.<locals>.Anything.__del__'
    ]
