"""The files of a LeRobotDataset written safely: JSON and parquet through a rename, and their metadata.

``huggingface`` (the ``datasets`` library's feature description) and ``pandas`` (the tasks table's
index) are the parquet schema metadata lerobot reads back; both are written as lerobot 0.6 does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ['arrow_type', 'hf_feature', 'tasks_of', 'tasks_table', 'write_json', 'write_parquet']


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(data, indent=4))
    os.replace(tmp, path)


def write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def hf_feature(ft: Mapping[str, Any]) -> dict[str, Any]:
    """A feature as the ``datasets`` library describes it in the parquet ``huggingface`` metadata."""
    value = {'dtype': ft['dtype'], '_type': 'Value'}
    if list(ft['shape']) == [1]:
        return value
    return {'feature': value, 'length': int(ft['shape'][0]), '_type': 'List'}


def arrow_type(ft: Mapping[str, Any]) -> pa.DataType:
    scalar = {'float32': pa.float32(), 'int64': pa.int64(), 'string': pa.string(), 'bool': pa.bool_()}[ft['dtype']]
    if list(ft['shape']) == [1]:
        return scalar
    return pa.list_(scalar, int(ft['shape'][0]))


def tasks_of(episodes: list[dict[str, Any]]) -> list[str]:
    """The dataset's tasks in first-use order (task_index is the position)."""
    seen: dict[str, None] = {}
    for e in episodes:
        for t in e['tasks']:
            seen.setdefault(t, None)
    return list(seen)


# The pandas metadata lerobot's tasks table carries: ``task`` is the index, so
# ``pandas.read_parquet`` gives a frame indexed by task string, as lerobot looks tasks up.
_PANDAS_TASKS_METADATA = {
    'index_columns': ['task'],
    'column_indexes': [
        {
            'name': None,
            'field_name': None,
            'pandas_type': 'unicode',
            'numpy_type': 'object',
            'metadata': {'encoding': 'UTF-8'},
        }
    ],
    'columns': [
        {
            'name': 'task_index',
            'field_name': 'task_index',
            'pandas_type': 'int64',
            'numpy_type': 'int64',
            'metadata': None,
        },
        {'name': 'task', 'field_name': 'task', 'pandas_type': 'unicode', 'numpy_type': 'object', 'metadata': None},
    ],
    'attributes': {},
    'creator': {'library': 'pyarrow', 'version': pa.__version__},
    'pandas_version': '2.2.3',
}


def tasks_table(tasks: list[str]) -> pa.Table:
    """``meta/tasks.parquet``: task_index and task, with ``task`` as the pandas index."""
    table = pa.table({'task_index': pa.array(range(len(tasks)), pa.int64()), 'task': pa.array(tasks, pa.string())})
    return table.replace_schema_metadata({'pandas': json.dumps(_PANDAS_TASKS_METADATA)})
