"""Node parameters with full descriptors, read-only unless they are tuned live.

Every node declares its parameters through :func:`declare`: a description, the type, a range or a
list of allowed values (shown by ``ros2 param describe``), and ``read_only`` unless the parameter
is dynamic. Most parameters are read once at startup; declaring them read-only makes
``ros2 param set`` say so instead of succeeding and changing nothing. Dynamic ones (the robot's
safety limits and timeout) are validated by :class:`DynamicParameters` before anything changes: a
bad value is refused with the reason and the old value stays.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

__all__ = ['ParameterError', 'declare', 'DynamicParameters']

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_ARRAYS = {
    str: (Parameter.Type.STRING_ARRAY, ParameterType.PARAMETER_STRING_ARRAY),
    float: (Parameter.Type.DOUBLE_ARRAY, ParameterType.PARAMETER_DOUBLE_ARRAY),
    int: (Parameter.Type.INTEGER_ARRAY, ParameterType.PARAMETER_INTEGER_ARRAY),
}


class ParameterError(ValueError):
    """A parameter value the node cannot start with (the node exits 2 with this one line)."""


def declare(
    node: Node,
    name: str,
    default: Any,
    description: str,
    *,
    dynamic: bool = False,
    choices: Optional[Sequence[str]] = None,
    value_range: Optional[tuple[float, float]] = None,
    item_type: Optional[type] = None,
) -> Any:
    """Declare ``name`` with a descriptor and return its value (lists: ``default=[]`` and ``item_type``).

    ``choices`` (strings) and ``value_range`` (inclusive) are checked here, so a bad value from a
    parameter file stops the node with one line naming the parameter.
    """
    constraints = ''
    if choices:
        constraints = f'one of: {", ".join(choices)}'
    descriptor = ParameterDescriptor(description=description, read_only=not dynamic, additional_constraints=constraints)
    if isinstance(default, list):
        kind, descriptor.type = _ARRAYS[item_type or str]
        try:
            value = node.declare_parameter(name, kind if not default else default, descriptor).value
        except InvalidParameterValueException as exc:
            raise ParameterError(f'{name}: {exc}') from None
        return list(value) if value is not None else []
    descriptor.type = _TYPES[type(default)]
    if value_range is not None:
        lo, hi = value_range
        if isinstance(default, int) and not isinstance(default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    try:
        value = node.declare_parameter(name, default, descriptor).value
    except InvalidParameterValueException as exc:
        raise ParameterError(f'{name}: {exc}') from None
    except Exception as exc:  # a value of the wrong type in a parameter file
        raise ParameterError(f'{name}: {exc}') from None
    if choices and value not in choices:
        raise ParameterError(f"{name} '{value}' must be one of {', '.join(choices)}")
    return value


class DynamicParameters:
    """Validates and applies changes of a node's dynamic parameters, all or nothing.

    ``apply(values)`` gets every dynamic parameter's value after the change (old values for the
    ones not changed) and either applies them and returns None, or returns why it refuses; then
    nothing changes and ``ros2 param set`` prints the reason.
    """

    def __init__(
        self,
        node: Node,
        names: Sequence[str],
        apply: Callable[[dict[str, Any]], Optional[str]],
        arrays: Sequence[str] = (),
    ) -> None:
        self._node = node
        self._names = tuple(names)
        self._arrays = frozenset(arrays)
        self._apply = apply
        node.add_on_set_parameters_callback(self._on_set)

    def _current(self, name: str) -> Any:
        value = self._node.get_parameter_or(name).value  # an unset array is NOT_SET: None
        return [] if value is None and name in self._arrays else value

    def _on_set(self, params: list[Parameter]) -> SetParametersResult:
        changed = {p.name: p.value for p in params if p.name in self._names}
        if not changed:
            return SetParametersResult(successful=True)
        values = {n: self._current(n) for n in self._names}
        values.update({k: [] if v is None else v for k, v in changed.items()})
        try:
            reason = self._apply(values)
        except Exception as exc:  # a bug must refuse the change, never half-apply it silently
            reason = f'internal error: {exc!r}'
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
        self._node.get_logger().info('parameters changed: ' + ', '.join(f'{k}={v!r}' for k, v in changed.items()))
        return SetParametersResult(successful=True)
