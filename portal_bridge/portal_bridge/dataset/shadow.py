"""Shadow evaluation: how far each candidate's proposals were from what the robot executed.

Reads a dataset the recorder (or bag_to_lerobot) wrote. For every candidate feature
``action.candidate.<identity>``, over the frames where the robot executed an action and the
candidate proposed one: per joint, the mean and the largest absolute difference, over all such
frames and split by who was driving (the executed action's sender).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .schema import ACTION, ACTION_MATCHED, ACTION_SENDER, SchemaError

__all__ = ['Divergence', 'divergences', 'load_actions', 'plot', 'table']

PREFIX = 'action.candidate.'


@dataclass(frozen=True)
class Divergence:
    candidate: str
    scope: str  # 'all' or 'sender=<identity>'
    joint: str
    frames: int
    mean_abs: float
    max_abs: float


def load_actions(root: Path | str) -> dict:
    """Executed actions, senders, match flags and candidates' proposals of every frame, in index order."""
    root = Path(root)
    info_path = root / 'meta' / 'info.json'
    if not info_path.is_file():
        raise SchemaError(f'{root} is not a dataset (no meta/info.json)')
    info = json.loads(info_path.read_text())
    names = info['features'][ACTION]['names']
    candidates = [k[len(PREFIX) :] for k in info['features'] if k.startswith(PREFIX)]
    columns = [ACTION, ACTION_SENDER, ACTION_MATCHED, 'index', *(PREFIX + c for c in candidates)]
    tables = [pq.read_table(p, columns=columns) for p in sorted(root.glob('data/chunk-*/file-*.parquet'))]
    if not tables:
        raise SchemaError(f'{root} has no frames')
    rows = [r for t in tables for r in t.to_pylist()]
    rows.sort(key=lambda r: r['index'])
    return {
        'names': names,
        'candidates': candidates,
        'executed': np.array([r[ACTION] for r in rows], dtype=np.float64),
        'sender': [r[ACTION_SENDER] for r in rows],
        'matched': np.array([r[ACTION_MATCHED] for r in rows], dtype=bool),
        'proposals': {c: np.array([r[PREFIX + c] for r in rows], dtype=np.float64) for c in candidates},
    }


def divergences(data: dict) -> list[Divergence]:
    out = []
    executed, matched, senders = data['executed'], data['matched'], np.array(data['sender'], dtype=object)
    for cand in data['candidates']:
        proposed = data['proposals'][cand]
        usable = matched & ~np.isnan(proposed).any(axis=1) & ~np.isnan(executed).any(axis=1)
        scopes = [('all', usable)] + [
            (f'sender={s}', usable & (senders == s)) for s in sorted(set(senders[usable].tolist()))
        ]
        for scope, mask in scopes:
            diff = np.abs(proposed[mask] - executed[mask])
            for j, joint in enumerate(data['names']):
                n = int(mask.sum())
                out.append(
                    Divergence(
                        cand,
                        scope,
                        joint,
                        n,
                        float(diff[:, j].mean()) if n else float('nan'),
                        float(diff[:, j].max()) if n else float('nan'),
                    )
                )
    return out


def table(rows: list[Divergence]) -> str:
    header = ('candidate', 'frames of', 'joint', 'frames', 'mean |diff|', 'max |diff|')
    cells = [header] + [
        (r.candidate, r.scope, r.joint, str(r.frames), f'{r.mean_abs:.6g}', f'{r.max_abs:.6g}') for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = [
        '  '.join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells
    ]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def plot(data: dict, path: Path | str) -> None:
    """One subplot per joint: executed actions (coloured by sender) and each candidate's proposals."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = data['names']
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.4 * len(names)), sharex=True, squeeze=False)
    frames = np.arange(len(data['sender']))
    senders = np.array(data['sender'], dtype=object)
    for j, (ax, joint) in enumerate(zip(axes[:, 0], names)):
        for s in sorted(set(senders[data['matched']].tolist())):
            mask = data['matched'] & (senders == s)
            ax.plot(frames[mask], data['executed'][mask, j], '.', markersize=3, label=f'executed ({s})')
        for cand, proposed in data['proposals'].items():
            ax.plot(frames, proposed[:, j], '-', linewidth=0.8, label=f'candidate {cand}')
        ax.set_ylabel(joint)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc='upper right', fontsize='small')
    axes[-1, 0].set_xlabel('frame (dataset index)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
