"""The recorder's episode services and dataset checks, before any session traffic (no server needed).

The node comes up against an unreachable server (it keeps retrying, as every bridge does); the
services work from the start: appending to a dataset on disk, refusing one of another schema with
the differences named, refusing an empty task or a second episode, and stopping an episode that
never saw an observation without writing anything.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from std_srvs.srv import Trigger
from support.ros_world import RosDomain, base_domain
from test_recorder import CONTRACT  # the same robot as the session tests

pytest.importorskip('pyarrow', reason='the recorder needs pyarrow (requirements/*.txt)')
pytest.importorskip('av', reason='the recorder needs PyAV (requirements/*.txt)')

from portal_bridge.dataset.schema import DatasetSchema  # noqa: E402
from portal_bridge.dataset.writer import Frame, LeRobotWriter  # noqa: E402
from portal_bridge.nodes.recorder import Recorder  # noqa: E402
from portal_bridge_msgs.srv import StartEpisode  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def domain():
    d = RosDomain(base_domain())
    yield d
    d.close()


def recorder(domain, tmp_path, root, **params):
    contract = tmp_path / 'portal.yaml'
    contract.write_text(CONTRACT)
    args = ['--ros-args', '-p', f'contract_file:={contract}', '-p', 'livekit_url:=ws://127.0.0.1:9',
            '-p', f'dataset_root:={root}', '-p', 'video_codec:=h264-lossless']  # fmt: skip
    for k, v in params.items():
        args += ['-p', f'{k}:={v}']
    return domain.add(Recorder(context=domain.context, cli_args=args))


def existing_dataset(root, action_names=('j1', 'j2'), episodes=2):
    schema = DatasetSchema(30, ('j1', 'j2'), action_names, (('wrist', 24, 32),), (), 'h264-lossless')
    writer = LeRobotWriter(root, schema)
    for e in range(episodes):
        episode = writer.start_episode(f'task {e}')
        for i in range(3):
            episode.add(Frame([0, 0], {'wrist': np.zeros((24, 32, 3), np.uint8)}, i, [0, 0], i, 'policy'))
        episode.save().result(timeout=30)
    writer.close()


def start(node, task):
    return node._srv_start(StartEpisode.Request(task=task), StartEpisode.Response())


def test_an_existing_dataset_is_appended_to(domain, tmp_path, monkeypatch):
    monkeypatch.setenv('LIVEKIT_API_KEY', 'devkey')
    monkeypatch.setenv('LIVEKIT_API_SECRET', 'secret')
    existing_dataset(tmp_path / 'ds')
    node = recorder(domain, tmp_path, tmp_path / 'ds')
    try:
        assert not start(node, '   ').success  # an empty task
        response = start(node, 'stack the cups')
        assert response.success and response.episode_index == 2, response.message
        again = start(node, 'another')
        assert not again.success and 'already recording' in again.message
        stop = node._srv_stop(Trigger.Request(), Trigger.Response())
        assert not stop.success and 'no frames' in stop.message  # nothing arrived: nothing written
        assert json.loads((tmp_path / 'ds/meta/info.json').read_text())['total_episodes'] == 2
        assert not node._srv_discard(Trigger.Request(), Trigger.Response()).success  # nothing recording now
    finally:
        node.shutdown()


def test_a_dataset_of_another_schema_is_refused_with_the_differences(domain, tmp_path, monkeypatch):
    monkeypatch.setenv('LIVEKIT_API_KEY', 'devkey')
    monkeypatch.setenv('LIVEKIT_API_SECRET', 'secret')
    existing_dataset(tmp_path / 'ds', action_names=('gripper', 'j2'))
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / 'ds').rglob('*'))
    node = recorder(domain, tmp_path, tmp_path / 'ds')
    try:
        response = start(node, 'stack the cups')
        assert not response.success
        assert 'another schema' in response.message and 'action_names' in response.message
        assert node._diag_recording()[1] == response.message  # and /diagnostics says it (ERROR)
        assert sorted(p.relative_to(tmp_path) for p in (tmp_path / 'ds').rglob('*')) == before
    finally:
        node.shutdown()
