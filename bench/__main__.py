"""make bench: latency, throughput and CPU of portal_bridge, the variants side by side in one run.

Every case starts the parts it compares as separate processes (as they are deployed) against one
local livekit-server, measures end-to-end numbers with a subscriber and takes per-hop numbers
from the bridges' own latency probes (their `latency` diagnostics task). This module holds the
report (its sections in order, its header) and ``main``; the shared setup is :class:`~.runner.Bench`,
each case is one ``case_*.py`` module (measure + report section), case 7 is ``safety_clock.py``, and
the harness (processes, ROS domains, machine line) is ``harness.py``.

    python -m bench [--quick] [--out docs/benchmarks.md]
    python -m bench --only safety_clock       # one section (repeatable), printed with its run header
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path
import sys
from typing import Callable

from . import (
    case_action_path,
    case_console,
    case_observation,
    case_recorder,
    case_reference,
    case_scale,
    case_sustained,
)
from .data_channel import data_channel_table
from .harness import machine
from .runner import Bench, Emit
from .safety_clock import safety_clock, safety_clock_table


def section_data_channel(b: Bench, emit: Emit) -> None:
    emit('\n## 11. The data channel alone (bare LiveKit SDK, one byte stream per frame at 30 fps)\n')
    emit(data_channel_table(b.server.url, b.server.api_key, b.server.api_secret, b.seconds(8.0), b.quick))


def section_safety_clock(b: Bench, emit: Emit) -> None:
    emit('\n## 7. Safety clock under image load (3 PNG cameras 640x480 @ 30 fps)\n')
    emit(safety_clock_table(safety_clock(b, b.seconds(30.0))))


SECTIONS: dict[str, Callable[[Bench, Emit], None]] = {
    'observation': case_observation.section,
    'action_path': case_action_path.section,
    'sustained': case_sustained.section,
    'scale': case_scale.section,
    'safety_clock': section_safety_clock,
    'recorder': case_recorder.section,
    'console': case_console.section,
    'reference': case_reference.section,
    'data_channel': section_data_channel,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog='bench')
    parser.add_argument('--quick', action='store_true', help='short runs and a reduced matrix (harness smoke test)')
    parser.add_argument('--out', default=None, help='write the markdown report here')
    parser.add_argument('--only', action='append', choices=list(SECTIONS), default=None,
                        help='run only this section (repeatable); prints the run header, writes no report')  # fmt: skip
    args = parser.parse_args()
    if args.only and args.out:
        parser.error('--only prints its sections; --out writes the whole report (use one of them)')
    b = Bench(args.quick)
    started = datetime.datetime.now().astimezone()
    out: list[str] = []

    def emit(text: str) -> None:
        print(text, flush=True)
        out.append(text)

    try:
        if args.only:
            command = ' '.join(['python -m bench', *sys.argv[1:]])
            emit(f'Produced by `{command}` on {started:%Y-%m-%d %H:%M %Z}.\n{machine()}')
        for name, section in SECTIONS.items():
            if not args.only or name in args.only:
                section(b, emit)
    finally:
        b.close()
    if args.out:
        header = (
            '# Benchmarks\n\n'
            f'Produced by `make bench` (`python -m bench --out docs/benchmarks.md`) on {started:%Y-%m-%d %H:%M %Z}.\n'
            f'{machine()}'
            '- setup: one local `livekit-server --dev` on loopback; robot side and operator side on two ROS domains '
            '(so all traffic crosses LiveKit); every bridge, publisher and peer is its own process; Fast DDS with '
            '`config/fastdds_localhost.xml`. Latencies are wall-clock differences on this one host.\n\n'
        )
        notes = (Path(__file__).parent / 'notes.md').read_text()
        Path(args.out).write_text(header + '\n'.join(out) + '\n\n' + notes)
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the LiveKit FFI threads must not outlive interpreter finalization
