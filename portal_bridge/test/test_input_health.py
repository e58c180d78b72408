"""Input health (input_health.py): states, transitions reported once, the summary (no ROS)."""

import pytest

from portal_bridge.ros.input_health import (
    FRESH,
    NO_PUBLISHER,
    SILENT,
    WAITING,
    InputHealth,
    change_lines,
    summary,
    values,
)


def states(statuses):
    return {s.name: s.state for s in statuses}


def test_states_from_publishers_and_message_age():
    h = InputHealth(0.5)
    h.add('front', '/front/image_raw')
    h.add('joints', '/joint_states')
    all_, changed = h.evaluate(0.0, {})
    assert states(all_) == {'front': NO_PUBLISHER, 'joints': NO_PUBLISHER} and len(changed) == 2
    all_, changed = h.evaluate(0.1, {'front': 1})
    assert states(all_)['front'] == WAITING and [c.name for c in changed] == ['front']
    h.seen('front', 0.2)
    all_, changed = h.evaluate(0.3, {'front': 1})
    assert states(all_)['front'] == FRESH and [c.state for c in changed] == [FRESH]
    all_, changed = h.evaluate(0.65, {'front': 1})
    assert changed == []  # no change, nothing reported
    all_, changed = h.evaluate(0.8, {'front': 1})
    assert states(all_)['front'] == SILENT and changed[0].age_s == pytest.approx(0.6)
    all_, changed = h.evaluate(0.9, {})
    assert states(all_)['front'] == NO_PUBLISHER and 'no publisher on /front/image_raw' in changed[0].describe()


def test_an_input_fresh_from_the_start_is_not_reported_as_a_change():
    h = InputHealth(1.0)
    h.add('joints', '/joint_states')
    h.seen('joints', 0.0)
    assert h.evaluate(0.1, {'joints': 1})[1] == []


def test_summary_names_what_is_wrong():
    h = InputHealth(0.5)
    h.add('front', '/front/image_raw')
    h.add('joints', '/joint_states')
    h.seen('joints', 1.0)
    statuses, _ = h.evaluate(1.1, {'joints': 1})
    any_bad, all_bad, text = summary(statuses)
    assert any_bad and not all_bad and text == 'front: no publisher on /front/image_raw'
    statuses, _ = h.evaluate(3.0, {'joints': 1})
    any_bad, all_bad, text = summary(statuses)
    assert all_bad and 'joints: nothing on /joint_states for 2.0 s' in text
    h.seen('front', 3.0)
    h.seen('joints', 3.0)
    assert summary(h.evaluate(3.1, {'joints': 1, 'front': 1})[0]) == (False, False, '2 input(s) fresh')


@pytest.mark.parametrize('bad', [0, -1, float('nan'), float('inf')])
def test_timeout_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError):
        InputHealth(bad)


def test_a_remote_feed_points_at_the_robot_not_at_a_topic():
    h = InputHealth(1.0)
    h.add('front', "video track 'front'", remote=True)
    all_, _ = h.evaluate(0.0, {'front': 0})
    assert all_[0].describe() == 'front: no robot in the room'
    all_, _ = h.evaluate(0.1, {'front': 1})
    assert all_[0].describe().startswith("front: the robot has sent nothing on its video track 'front' yet")
    h.seen('front', 0.2)
    h.evaluate(0.3, {'front': 1})
    all_, changed = h.evaluate(2.0, {'front': 1})
    text = changed[0].describe()
    assert "nothing from the robot on its video track 'front' for 1.8 s" in text and 'inputs' in text
    assert 'publisher' not in text
    line = change_lines(changed)[0][1]
    assert line.count('(see ') == 1 and line.endswith("(see the robot's /diagnostics, inputs)"), line


def test_change_lines_and_diagnostics_values():
    h = InputHealth(0.5)
    h.add('joints', '/joint_states')
    all_, changed = h.evaluate(0.0, {'joints': 0})
    assert change_lines(changed) == [(False, 'input joints: no publisher on /joint_states (see /diagnostics, inputs)')]
    h.seen('joints', 0.1)
    all_, changed = h.evaluate(0.2, {'joints': 1})
    assert change_lines(changed) == [(True, 'input joints: /joint_states fresh, delivering again')]
    assert values(all_) == {'joints.state': FRESH, 'joints.age_s': 0.1, 'joints.publishers': 1}
