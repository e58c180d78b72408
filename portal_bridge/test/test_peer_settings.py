"""Each peer's own settings: taken from portal.yaml unless given, never written back into the contract."""

import pytest

from portal_bridge.portal import Operator, PeerSettings, Robot
from portal_bridge.portal.wire.contract import WireContract
from portal_bridge.portal.wire.dtypes import DType


def contract(**kw) -> WireContract:
    c = WireContract(**kw)
    c.add_state([('j1', DType.F32)])
    c.add_action([('j1', DType.F32)])
    return c


def test_defaults_come_from_the_contract():
    c = contract(slack=9, ping_ms=250, action_subscription=True)
    assert PeerSettings.of(c) == PeerSettings(slack=9, ping_ms=250, action_subscription=True)


def test_overrides_apply_and_none_keeps_the_contracts_value():
    c = contract(slack=9)
    s = PeerSettings.of(c, slack=None, action_subscription=True)
    assert (s.slack, s.ping_ms, s.action_subscription) == (9, 1000, True)
    assert PeerSettings.of(c, slack=60).slack == 60


@pytest.mark.parametrize(
    ('override', 'message'),
    [({'slack': 0}, 'slack'), ({'slack': True}, 'slack'), ({'ping_ms': -1}, 'ping_ms'),
     ({'action_subscription': 'yes'}, 'action_subscription')],
)  # fmt: skip
def test_bad_values_are_refused_with_the_settings_name(override, message):
    with pytest.raises(ValueError, match=message):
        PeerSettings.of(contract(), **override)


def test_unknown_setting_is_refused():
    with pytest.raises(TypeError, match='tolerance'):
        PeerSettings.of(contract(), tolerance=2.0)


def test_an_operators_own_settings_leave_its_contract_as_loaded():
    c = contract(slack=5, action_subscription=False)
    op = Operator(c, settings=PeerSettings.of(c, slack=30, action_subscription=True))
    assert op.settings.slack == 30 and op.settings.action_subscription
    assert op.contract.slack == 5 and not op.contract.action_subscription
    assert op.contract.fingerprints() == c.fingerprints()


def test_a_session_without_settings_uses_the_contracts():
    c = contract(ping_ms=0)
    assert Robot(c).settings == PeerSettings(slack=5, ping_ms=0, action_subscription=False)
