"""The nodes' counter table: one style, a kind for each, exceptions named the same way."""

from __future__ import annotations

import re

from portal_bridge.portal.errors import InvalidFrameDimensions
from portal_bridge.ros.counters import ADJUSTED, COUNTERS, EVENT, REJECTED, kind_of, reason_of
from portal_bridge.ros.images import ImageConversionError


def test_every_counter_is_kebab_case_with_a_kind_and_a_meaning():
    for name, counter in COUNTERS.items():
        assert re.fullmatch(r'[a-z0-9]+(-[a-z0-9]+)*', name), name
        assert counter.name == name and counter.kind in (REJECTED, ADJUSTED, EVENT) and counter.meaning


def test_exceptions_count_under_their_reason_or_their_kebab_class_name():
    assert reason_of(ImageConversionError('short-data', 'x')) == 'short-data'
    assert reason_of(InvalidFrameDimensions('odd')) == 'invalid-frame-dimensions'
    assert kind_of('invalid-frame-dimensions') == REJECTED
    assert kind_of('limit-clamped') == ADJUSTED and kind_of('emergency-stop') == EVENT
