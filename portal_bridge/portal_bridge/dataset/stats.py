"""Feature statistics as LeRobotDataset v3.0 stores them (per episode, and for the whole dataset).

Every numeric feature gets ``min``, ``max``, ``mean``, ``std``, ``count`` and the quantiles
``q01 q10 q50 q90 q99``, one value per dimension; ``count`` is the number of frames. Camera
statistics are per channel, scaled to [0, 1] and shaped ``(3, 1, 1)``, as lerobot's normalizers
expect. They are exact here: a camera's pixels are counted into one 256-bin histogram per
channel while the episode is recorded (on a downsampled view, as lerobot samples), so no frame
has to be kept for the statistics. Candidate actions are NaN where a candidate sent nothing;
their statistics ignore the NaNs (a dimension with no value at all gets zeros).

The dataset's statistics combine the episodes': min of mins, max of maxes, the count-weighted
mean, the pooled variance, and count-weighted quantiles (exact quantiles cannot be recovered
from per-episode summaries; these are what lerobot 0.6 writes too).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ['QUANTILES', 'ImageStats', 'aggregate', 'to_json', 'from_json', 'vector_stats']

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f'q{round(q * 100):02d}' for q in QUANTILES)
_DOWNSAMPLE_ABOVE = 300  # px: larger frames are counted on a strided view about 150 px across
_DOWNSAMPLE_TARGET = 150

Stats = dict[str, np.ndarray]


def vector_stats(values: np.ndarray) -> Stats:
    """Statistics of ``(frames, dims)`` (or ``(frames,)``) values; NaNs are ignored per dimension."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    frames, dims = arr.shape
    out: Stats = {}
    finite = ~np.isnan(arr)
    has = finite.any(axis=0)
    safe = np.where(finite, arr, 0.0)
    n = np.maximum(finite.sum(axis=0), 1)
    mean = safe.sum(axis=0) / n
    var = (np.where(finite, arr - mean, 0.0) ** 2).sum(axis=0) / n
    out['min'] = np.where(has, np.min(np.where(finite, arr, np.inf), axis=0), 0.0) if frames else np.zeros(dims)
    out['max'] = np.where(has, np.max(np.where(finite, arr, -np.inf), axis=0), 0.0) if frames else np.zeros(dims)
    out['mean'] = np.where(has, mean, 0.0)
    out['std'] = np.where(has, np.sqrt(var), 0.0)
    out['count'] = np.array([frames], dtype=np.int64)
    for q, key in zip(QUANTILES, QUANTILE_KEYS):
        col = np.zeros(dims)
        for d in range(dims):
            if has[d]:
                col[d] = np.quantile(arr[finite[:, d], d], q)
        out[key] = col
    return out


class ImageStats:
    """Per-channel pixel statistics of one camera over an episode, from exact histograms."""

    def __init__(self) -> None:
        self.frames = 0
        self._hist = np.zeros((3, 256), dtype=np.int64)

    def add(self, rgb: np.ndarray) -> None:
        """Count one ``(height, width, 3)`` uint8 frame (a strided view of it when large)."""
        height, width = rgb.shape[:2]
        if max(height, width) >= _DOWNSAMPLE_ABOVE:
            step = max(int((width if width > height else height) / _DOWNSAMPLE_TARGET), 1)
            rgb = rgb[::step, ::step]
        for c in range(3):
            self._hist[c] += np.bincount(rgb[..., c].ravel(), minlength=256)
        self.frames += 1

    def stats(self) -> Stats:
        levels = np.arange(256, dtype=np.float64) / 255.0
        out: dict[str, list[float]] = {k: [] for k in ('min', 'max', 'mean', 'std', *QUANTILE_KEYS)}
        for c in range(3):
            h = self._hist[c]
            total = int(h.sum())
            if total == 0:
                for k in out:
                    out[k].append(0.0)
                continue
            nz = np.flatnonzero(h)
            mean = float((h * levels).sum() / total)
            out['min'].append(float(levels[nz[0]]))
            out['max'].append(float(levels[nz[-1]]))
            out['mean'].append(mean)
            out['std'].append(float(np.sqrt((h * (levels - mean) ** 2).sum() / total)))
            cumulative = np.cumsum(h)
            for q, key in zip(QUANTILES, QUANTILE_KEYS):
                # the smallest level with at least q of the pixels at or below it
                out[key].append(float(levels[int(np.searchsorted(cumulative, q * total))]))
        stats: Stats = {k: np.asarray(v).reshape(3, 1, 1) for k, v in out.items()}
        stats['count'] = np.array([self.frames], dtype=np.int64)
        return stats


def aggregate(episodes: Iterable[Mapping[str, Stats]]) -> dict[str, Stats]:
    """The dataset's statistics from its episodes' (features missing in some are combined where present)."""
    per_feature: dict[str, list[Stats]] = {}
    for ep in episodes:
        for key, st in ep.items():
            per_feature.setdefault(key, []).append(st)
    out: dict[str, Stats] = {}
    for key, items in per_feature.items():
        counts = np.array([float(s['count'][0]) for s in items])
        total = counts.sum()
        shape = np.asarray(items[0]['mean']).shape
        w = (counts / total if total else np.full(len(items), 1.0 / len(items))).reshape(-1, *([1] * len(shape)))
        means = np.stack([np.asarray(s['mean'], dtype=np.float64) for s in items])
        var = np.stack([np.asarray(s['std'], dtype=np.float64) ** 2 for s in items])
        mean = (means * w).sum(axis=0)
        out[key] = {
            'min': np.min(np.stack([s['min'] for s in items]), axis=0),
            'max': np.max(np.stack([s['max'] for s in items]), axis=0),
            'mean': mean,
            'std': np.sqrt(((var + (means - mean) ** 2) * w).sum(axis=0)),
            'count': np.array([int(total)], dtype=np.int64),
        }
        for q in QUANTILE_KEYS:
            out[key][q] = (np.stack([np.asarray(s[q], dtype=np.float64) for s in items]) * w).sum(axis=0)
    return out


def to_json(stats: Mapping[str, Stats]) -> dict[str, dict[str, Any]]:
    return {k: {s: np.asarray(v).tolist() for s, v in st.items()} for k, st in stats.items()}


def from_json(data: Mapping[str, Mapping[str, Any]]) -> dict[str, Stats]:
    return {k: {s: np.asarray(v) for s, v in st.items()} for k, st in data.items()}
