"""The native stderr filter drops only the listed lines, keeps everything else, loses nothing at exit."""

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from portal_bridge.ros.native_stderr import filter_native_stderr
    assert filter_native_stderr() is True
    assert filter_native_stderr() is False  # once per process
    os.write(2, b'[INFO] [1] [robot_bridge]: before\\n')
    os.write(2, b'[OpenH264] this = 0x0x7f, Warning:Actual input framerate 0.000000 is different from '
                b'framerate in setting 30.000000, suggest to use other rate control modes\\n')
    os.write(2, b'[OpenH264] this = 0x0x7f, Error:something that applies\\n')
    os.write(2, b'Warning:Actual input framerate without the library prefix\\n')
    print('python stderr line', file=sys.stderr)
    for i in range(2000):  # more than a pipe buffer, written just before exit
        os.write(2, b'line %d\\n' % i)
    os.write(2, b'last line without a newline')
    """
)


def test_only_the_listed_native_line_is_dropped_and_nothing_is_lost_at_exit():
    run = subprocess.run([sys.executable, '-c', CHILD], capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr.decode(errors='replace')[-2000:]
    err = run.stderr.decode()
    assert 'before' in err and 'Error:something that applies' in err
    assert 'Warning:Actual input framerate without the library prefix' in err
    assert 'framerate in setting 30.000000' not in err
    assert 'python stderr line' in err
    assert all(f'line {i}\n' in err for i in range(2000))
    assert err.endswith('last line without a newline')


EXIT_CHILD = textwrap.dedent(
    """
    import os, sys
    import livekit.rtc  # loaded: the nodes' exit path ends the process with os._exit
    from portal_bridge.nodes.node_main import _leave
    from portal_bridge.ros.native_stderr import filter_native_stderr
    filter_native_stderr()
    for i in range(3000):  # several pipe buffers, the last ones still in the pipe at exit
        os.write(2, b'line %d\\n' % i)
    os.write(2, b'[FATAL] [1] [robot_bridge]: the last line before the exit\\n')
    _leave(2)
    """
)


def test_nothing_is_lost_when_a_node_leaves_with_os_exit():
    """A configuration error is logged in one FATAL line and the node exits at once with code 2.

    ``os._exit`` skips ``atexit``: without draining the filter's pipe first, the tail of stderr
    (the FATAL line itself) was lost now and then (the credentials test failed on CI that way).
    """
    run = subprocess.run([sys.executable, '-c', EXIT_CHILD], capture_output=True, timeout=30)
    err = run.stderr.decode(errors='replace')
    assert run.returncode == 2, err[-2000:]
    assert all(f'line {i}\n' in err for i in range(3000)), err[-2000:]
    assert err.endswith('[FATAL] [1] [robot_bridge]: the last line before the exit\n'), err[-2000:]
