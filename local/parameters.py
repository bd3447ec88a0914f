"""Template parameters: defaults, overrides, and CloudFormation's validation of them.

A deploy rejects a value outside ``AllowedValues``, not matching ``AllowedPattern``, outside
``MinValue``/``MaxValue`` (``Number``) or ``MinLength``/``MaxLength``, an override for an
undeclared parameter, and a parameter with neither a ``Default`` nor a value; so does the
local stack. ``Ref`` to a ``String`` or ``Number`` parameter is a string (as in
CloudFormation), to a ``CommaDelimitedList``/``List<...>`` a list of strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["TemplateError", "as_string", "parameter_values"]


class TemplateError(ValueError):
    """The template (or an override) is invalid or uses something the runtime cannot do."""


def as_string(value: Any) -> str:
    """A scalar template value as CloudFormation renders it in a string (``true``, ``5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise TemplateError(f"a string value is expected, got {value!r}")
    return str(value)


def parameter_values(declared: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, str]) -> dict[str, Any]:
    """The value of every declared parameter: the override, else the ``Default``."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"unknown parameter(s) in overrides: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            raw: Any = overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no Default; pass --parameter-overrides {name}=...")
        values[name] = parameter_value(name, spec, raw)
    return values


def parameter_value(name: str, spec: Mapping[str, Any], raw: Any) -> Any:
    """Validate a parameter value like CloudFormation and return what ``Ref`` gives."""
    kind = str(spec.get("Type", "String"))
    text = as_string(raw) if not isinstance(raw, list) else ",".join(map(str, raw))
    if kind in ("CommaDelimitedList", "List<Number>") or kind.startswith("List<"):
        return [item.strip() for item in text.split(",")] if text else []
    allowed = spec.get("AllowedValues")
    if allowed is not None and text not in [as_string(a) for a in allowed]:
        raise TemplateError(f"parameter {name}={text!r} is not one of {', '.join(map(str, allowed))}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(str(pattern), text) is None:
        raise TemplateError(f"parameter {name}={text!r} does not match {pattern}")
    if kind == "Number":
        try:
            number = float(text)
        except ValueError:
            raise TemplateError(f"parameter {name}={text!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}={text} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}={text} is above MaxValue {spec['MaxValue']}")
    if "MinLength" in spec and len(text) < int(spec["MinLength"]):
        raise TemplateError(f"parameter {name}={text!r} is shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
        raise TemplateError(f"parameter {name}={text!r} is longer than MaxLength {spec['MaxLength']}")
    return text  # Ref of a String or Number parameter is a string in CloudFormation
