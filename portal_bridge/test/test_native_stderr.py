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
