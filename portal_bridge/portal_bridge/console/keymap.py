"""The console's driving map: which key, gamepad axis or button moves which action field.

A keymap is a small YAML file next to the wire contract (``config/console_keymap.yaml`` for the
arm, ``config/mobile_base_keymap.yaml`` for the base). Each binding names an action field of the
contract and either

* ``rate``: while held the field moves at ``rate`` units per second, starting from the robot's
  current value of the state field of the same name (joint position targets), or
* ``value``: while held the field is ``value`` (velocities); when no binding of a ``value`` field
  is held the field is 0.

Dead-man rule, enforced by the page: actions are sent only while a bound key is held, or while
the gamepad's ``enable_button`` is held. Releasing sends nothing, so the robot's action watchdog
takes over; the page never sends a "stop" of its own.

The file is validated here against the contract (unknown fields, keys, numbers that are not
finite, duplicate bindings): a bad keymap stops the console with one line naming the entry.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import yaml

__all__ = ['KeymapError', 'load_keymap', 'parse_keymap', 'default_keymap']

SUPPORTED_VERSION = 1
# KeyboardEvent.code values: KeyA..KeyZ, Digit0..Digit9, ArrowUp, Space, ShiftLeft, Numpad4, F1...
_KEY_CODE = re.compile(r'^(Key[A-Z]|Digit[0-9]|Arrow(Up|Down|Left|Right)|Numpad[0-9]|F[0-9]{1,2}|'
                       r'Space|Enter|Tab|Backspace|Minus|Equal|BracketLeft|BracketRight|Semicolon|Quote|'
                       r'Comma|Period|Slash|Backslash|Backquote|(Shift|Control|Alt|Meta)(Left|Right)|'
                       r'Home|End|PageUp|PageDown|Insert|Delete)$')  # fmt: skip
_TOP_KEYS = {'version', 'rate_hz', 'keyboard', 'gamepad'}
_GAMEPAD_KEYS = {'enable_button', 'deadzone', 'axes', 'buttons'}


class KeymapError(ValueError):
    """A keymap the console cannot use; the message names the file entry."""


def load_keymap(path: str, action_fields: Sequence[str], state_fields: Sequence[str] | None = None) -> dict[str, Any]:
    """Read and validate the keymap file at ``path`` (KeymapError on any problem)."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as exc:
        raise KeymapError(f'cannot read keymap {path}: {exc.strerror}') from None
    try:
        return parse_keymap(text, action_fields, state_fields)
    except KeymapError as exc:
        raise KeymapError(f'keymap {path}: {exc}') from None


def default_keymap() -> dict[str, Any]:
    """No file given: no bindings (the page shows the robot and can take control and stop it)."""
    return {'version': SUPPORTED_VERSION, 'rate_hz': 30.0, 'keyboard': [], 'gamepad': None}


def parse_keymap(text: str, action_fields: Sequence[str], state_fields: Sequence[str] | None = None) -> dict[str, Any]:
    """The keymap as the page reads it (plain JSON types), after checking it against the contract.

    With ``state_fields``, a ``rate`` binding's field must also be a state field: the page starts
    it from the robot's value of that field (without one it would start from 0).
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KeymapError(f'not valid YAML: {exc}') from None
    if not isinstance(doc, dict):
        raise KeymapError('must be a mapping with version, rate_hz, keyboard and gamepad')
    _no_unknown(doc, _TOP_KEYS, 'top level')
    if doc.get('version') != SUPPORTED_VERSION:
        raise KeymapError(f'version must be {SUPPORTED_VERSION} (got {doc.get("version")!r})')
    rate_hz = _number(doc.get('rate_hz', 30.0), 'rate_hz')
    if not 1.0 <= rate_hz <= 200.0:
        raise KeymapError(f'rate_hz {rate_hz} must be within 1..200')
    fields = list(action_fields)
    keyboard = [
        _binding(entry, f'keyboard[{i}]', fields, 'key', _key_code) for i, entry in enumerate(doc.get('keyboard') or [])
    ]
    _no_duplicates([b['key'] for b in keyboard], 'keyboard key')
    gamepad = _gamepad(doc.get('gamepad'), fields)
    bindings = keyboard + (gamepad['axes'] + gamepad['buttons'] if gamepad else [])
    _consistent_modes(bindings)
    if state_fields is not None:
        for b in bindings:
            if 'rate' in b and b['field'] not in state_fields:
                raise KeymapError(
                    f"field {b['field']!r} is bound with rate, which starts from the robot's state, but the "
                    f'contract has no state field {b["field"]!r}; bind it with value, or add the state field'
                )
    return {'version': SUPPORTED_VERSION, 'rate_hz': rate_hz, 'keyboard': keyboard, 'gamepad': gamepad}


def _gamepad(section: Any, fields: list[str]) -> dict[str, Any] | None:
    if section is None:
        return None
    if not isinstance(section, dict):
        raise KeymapError('gamepad must be a mapping')
    _no_unknown(section, _GAMEPAD_KEYS, 'gamepad')
    if 'enable_button' not in section:
        raise KeymapError('gamepad.enable_button is required (the dead-man button: actions only while it is held)')
    enable = _index(section['enable_button'], 'gamepad.enable_button')
    deadzone = _number(section.get('deadzone', 0.1), 'gamepad.deadzone')
    if not 0.0 <= deadzone < 1.0:
        raise KeymapError(f'gamepad.deadzone {deadzone} must be within 0..1')
    axes = [_binding(e, f'gamepad.axes[{i}]', fields, 'axis', _index) for i, e in enumerate(section.get('axes') or [])]
    buttons = [
        _binding(e, f'gamepad.buttons[{i}]', fields, 'button', _index)
        for i, e in enumerate(section.get('buttons') or [])
    ]
    _no_duplicates([b['axis'] for b in axes], 'gamepad axis')
    _no_duplicates([b['button'] for b in buttons], 'gamepad button')
    if enable in [b['button'] for b in buttons]:
        raise KeymapError(f'gamepad button {enable} is the enable button and cannot also drive a field')
    return {'enable_button': enable, 'deadzone': deadzone, 'axes': axes, 'buttons': buttons}


def _binding(entry: Any, where: str, fields: list[str], source: str, check) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise KeymapError(f'{where} must be a mapping like {{{source}: ..., field: ..., rate: ...}}')
    _no_unknown(entry, {source, 'field', 'rate', 'value'}, where)
    if source not in entry:
        raise KeymapError(f'{where} needs {source}')
    field = entry.get('field')
    if field not in fields:
        raise KeymapError(f'{where}: field {field!r} is not an action field of the contract ({", ".join(fields)})')
    if ('rate' in entry) == ('value' in entry):
        raise KeymapError(f'{where}: give exactly one of rate (units per second while held) or value (while held)')
    mode = 'rate' if 'rate' in entry else 'value'
    return {
        source: check(entry[source], f'{where}.{source}'),
        'field': field,
        mode: _number(entry[mode], f'{where}.{mode}'),
    }


def _consistent_modes(bindings: list[dict[str, Any]]) -> None:
    modes: dict[str, str] = {}
    for b in bindings:
        mode = 'rate' if 'rate' in b else 'value'
        if modes.setdefault(b['field'], mode) != mode:
            raise KeymapError(f'field {b["field"]!r} is bound both with rate and with value; use one')


def _key_code(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _KEY_CODE.match(value):
        raise KeymapError(f'{where}: {value!r} is not a KeyboardEvent.code such as KeyQ, Digit1, ArrowUp, Space')
    return value


def _index(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 64:
        raise KeymapError(f'{where}: {value!r} must be an index 0..63')
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise KeymapError(f'{where}: {value!r} must be a finite number')
    return float(value)


def _no_unknown(doc: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in allowed)
    if unknown:
        raise KeymapError(f'{where}: unknown key(s) {", ".join(unknown)} (allowed: {", ".join(sorted(allowed))})')


def _no_duplicates(items: list, what: str) -> None:
    seen: set = set()
    for item in items:
        if item in seen:
            raise KeymapError(f'{what} {item!r} is bound twice')
        seen.add(item)
