"""Percentiles and markdown tables for the benchmark report."""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (NaN when empty)."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(int(q * (len(s) - 1) + 0.5), len(s) - 1)]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {'n': len(values), 'p50': pct(values, 0.5), 'p95': pct(values, 0.95), 'p99': pct(values, 0.99)}


def fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    if isinstance(value, int):
        return str(value)
    return f'{value:.{digits}f}'


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ['| ' + ' | '.join(headers) + ' |', '|' + '|'.join('---' for _ in headers) + '|']
    for row in rows:
        lines.append('| ' + ' | '.join(v if isinstance(v, str) else fmt(v) for v in row) + ' |')
    return '\n'.join(lines)
