"""Evaluate CloudFormation intrinsic functions, as CloudFormation does at deploy time.

The :class:`Resolver` walks a template fragment and replaces every intrinsic function
(``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Select``, ``Fn::Split``,
``Fn::If``, ``Fn::Equals``, ``Fn::And``/``Or``/``Not``, ``Condition``, ``Fn::FindInMap``,
``Fn::Base64``, ``Fn::GetAZs``, ``Fn::ToJsonString``, ``Fn::Length``) by its value. What a
``Ref`` or ``Fn::GetAtt`` of a resource means is the stack's business, so the resolver asks
a :class:`Context` for those (parameters, pseudo parameters, physical ids, attributes).

``Ref: AWS::NoValue`` removes the property (or list item) it is the value of, as in
CloudFormation. ``Fn::ImportValue`` (cross-stack exports) has no local meaning and fails.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["NO_VALUE", "Context", "IntrinsicError", "Resolver"]


class IntrinsicError(ValueError):
    """A template expression that cannot be evaluated (unknown name, bad arguments)."""


class _NoValue:
    """The value of ``Ref: AWS::NoValue``: the enclosing property is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Context(Protocol):
    """What the resolver needs from a stack."""

    def ref(self, name: str) -> Any:
        """Value of ``Ref: name`` (a parameter, pseudo parameter or resource)."""

    def get_att(self, resource: str, attribute: str) -> Any:
        """Value of ``Fn::GetAtt: [resource, attribute]``."""

    def condition(self, name: str) -> bool:
        """Value of the named condition from the ``Conditions`` section."""

    def find_in_map(self, map_name: str, top_key: str, second_key: str) -> Any:
        """Value from the ``Mappings`` section."""

    @property
    def region(self) -> str:
        """The stack's region (for ``Fn::GetAZs``)."""


class Resolver:
    """Replaces intrinsic functions in template fragments by their values."""

    def __init__(self, context: Context) -> None:
        self._context = context

    # ------------------------------------------------------------------ public
    def resolve(self, value: Any) -> Any:
        """Resolve ``value`` recursively; the result contains no intrinsic functions."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, argument),) = value.items()
                if key in ("Ref", "Condition") or key.startswith("Fn::"):
                    return self._function(key, argument)
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        return value

    def evaluate_condition(self, expression: Any) -> bool:
        """Evaluate a condition expression (the value of an entry in ``Conditions``)."""
        result = self.resolve(expression)
        if not isinstance(result, bool):
            raise IntrinsicError(f"condition does not evaluate to a boolean: {expression!r}")
        return result

    # ----------------------------------------------------------------- private
    def _function(self, name: str, argument: Any) -> Any:
        handlers = {
            "Ref": self._ref,
            "Condition": self._condition,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::If": self._if,
            "Fn::Equals": self._equals,
            "Fn::And": self._and,
            "Fn::Or": self._or,
            "Fn::Not": self._not,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": self._base64,
            "Fn::GetAZs": self._get_azs,
            "Fn::ToJsonString": self._to_json_string,
            "Fn::Length": self._length,
        }
        handler = handlers.get(name)
        if handler is None:
            raise IntrinsicError(f"{name} is not supported by the local runtime")
        return handler(argument)

    def _ref(self, argument: Any) -> Any:
        name = self.resolve(argument)
        if not isinstance(name, str):
            raise IntrinsicError(f"Ref needs a name, got {argument!r}")
        if name == "AWS::NoValue":
            return NO_VALUE
        return self._context.ref(name)

    def _condition(self, argument: Any) -> bool:
        if not isinstance(argument, str):
            raise IntrinsicError(f"Condition needs a name, got {argument!r}")
        return self._context.condition(argument)

    def _get_att(self, argument: Any) -> Any:
        argument = self.resolve(argument)
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        if not (isinstance(argument, list) and len(argument) == 2 and all(isinstance(a, str) for a in argument)):
            raise IntrinsicError(f"Fn::GetAtt needs [resource, attribute], got {argument!r}")
        return self._context.get_att(argument[0], argument[1])

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, str):
            template, variables = argument, {}
        elif isinstance(argument, list) and len(argument) == 2 and isinstance(argument[0], str):
            template, variables = argument[0], self.resolve(argument[1])
            if not isinstance(variables, dict):
                raise IntrinsicError("Fn::Sub variables must be a mapping")
        else:
            raise IntrinsicError(f"Fn::Sub needs a string or [string, variables], got {argument!r}")

        def substitute(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):  # ${!Literal} is the escape for a literal ${Literal}
                return "${" + expression[1:] + "}"
            name = expression.strip()
            if name in variables:
                value = variables[name]
            elif "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                value = self._context.get_att(resource, attribute)
            else:
                value = self._context.ref(name)
            return _as_string(value, f"${{{name}}}")

        return _SUB_VARIABLE.sub(substitute, template)

    def _join(self, argument: Any) -> str:
        argument = self.resolve(argument)
        if not (isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], list)):
            raise IntrinsicError(f"Fn::Join needs [delimiter, [values]], got {argument!r}")
        delimiter, values = argument
        return str(delimiter).join(_as_string(v, "Fn::Join item") for v in values)

    def _select(self, argument: Any) -> Any:
        argument = self.resolve(argument)
        if not (isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], list)):
            raise IntrinsicError(f"Fn::Select needs [index, [values]], got {argument!r}")
        index, values = int(argument[0]), argument[1]
        if not 0 <= index < len(values):
            raise IntrinsicError(f"Fn::Select index {index} is out of range")
        return values[index]

    def _split(self, argument: Any) -> list[str]:
        argument = self.resolve(argument)
        if not (isinstance(argument, list) and len(argument) == 2):
            raise IntrinsicError(f"Fn::Split needs [delimiter, string], got {argument!r}")
        return str(argument[1]).split(str(argument[0]))

    def _if(self, argument: Any) -> Any:
        if not (isinstance(argument, list) and len(argument) == 3 and isinstance(argument[0], str)):
            raise IntrinsicError(f"Fn::If needs [condition, then, else], got {argument!r}")
        chosen = argument[1] if self._context.condition(argument[0]) else argument[2]
        return self.resolve(chosen)

    def _equals(self, argument: Any) -> bool:
        argument = self.resolve(argument)
        if not (isinstance(argument, list) and len(argument) == 2):
            raise IntrinsicError(f"Fn::Equals needs two values, got {argument!r}")
        # CloudFormation compares the string forms: !Equals [!Ref Count, 3] with Count "3" is true.
        return bool(_comparable(argument[0]) == _comparable(argument[1]))

    def _booleans(self, name: str, argument: Any) -> list[bool]:
        if not isinstance(argument, list):
            raise IntrinsicError(f"{name} needs a list of conditions, got {argument!r}")
        values = [self.resolve(a) for a in argument]
        if not all(isinstance(v, bool) for v in values):
            raise IntrinsicError(f"{name} needs conditions, got {values!r}")
        return values

    def _and(self, argument: Any) -> bool:
        return all(self._booleans("Fn::And", argument))

    def _or(self, argument: Any) -> bool:
        return any(self._booleans("Fn::Or", argument))

    def _not(self, argument: Any) -> bool:
        values = self._booleans("Fn::Not", argument)
        if len(values) != 1:
            raise IntrinsicError("Fn::Not needs exactly one condition")
        return not values[0]

    def _find_in_map(self, argument: Any) -> Any:
        argument = self.resolve(argument)
        if not (isinstance(argument, list) and len(argument) in (3, 4)):
            raise IntrinsicError(f"Fn::FindInMap needs [map, key, key], got {argument!r}")
        return self._context.find_in_map(str(argument[0]), str(argument[1]), str(argument[2]))

    def _base64(self, argument: Any) -> str:
        text = _as_string(self.resolve(argument), "Fn::Base64")
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    def _get_azs(self, argument: Any) -> list[str]:
        region = self.resolve(argument) or self._context.region
        return [f"{region}{zone}" for zone in "abc"]

    def _to_json_string(self, argument: Any) -> str:
        return json.dumps(self.resolve(argument), separators=(",", ":"))

    def _length(self, argument: Any) -> int:
        value = self.resolve(argument)
        if not isinstance(value, list):
            raise IntrinsicError(f"Fn::Length needs a list, got {value!r}")
        return len(value)


def _as_string(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise IntrinsicError(f"{where} does not resolve to a string: {value!r}")


def _comparable(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return _as_string(value, "Fn::Equals")
    if isinstance(value, Mapping):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value
