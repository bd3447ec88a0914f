"""Read CloudFormation/SAM YAML, including the short-form intrinsic function tags.

CloudFormation accepts ``!Ref X`` as shorthand for ``{"Ref": "X"}`` and ``!Sub ...`` for
``{"Fn::Sub": ...}``; plain YAML loaders reject those tags. :class:`CfnLoader` is a
``yaml.SafeLoader`` with multi-constructors that turn every short form into the long
form, exactly as CloudFormation does before it evaluates anything:

* ``!Ref Name`` -> ``{"Ref": "Name"}``
* ``!GetAtt Res.Attr`` -> ``{"Fn::GetAtt": ["Res", "Attr"]}`` (the dotted string form is
  split at the first dot, as CloudFormation does; the list form is kept)
* ``!Condition Name`` -> ``{"Condition": "Name"}``
* any other ``!Xyz value`` -> ``{"Fn::Xyz": value}`` (Sub, Join, Select, Split, If,
  Equals, And, Or, Not, FindInMap, Base64, Cidr, GetAZs, ImportValue, ToJsonString, ...)

Like CloudFormation, timestamps and other implicit YAML types are not special: a date-like
scalar stays a string (``2026-01-01`` must not become a ``datetime.date``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["CfnLoader", "load_template", "loads_template"]


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation's short-form intrinsic tags."""


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(None, None, f"unexpected node {type(node).__name__}", node.start_mark)


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value = _construct(loader, node)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{suffix}": value}


def _timestamp_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


CfnLoader.add_multi_constructor("!", _intrinsic)  # type: ignore[no-untyped-call]
CfnLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)


def loads_template(text: str) -> dict[str, Any]:
    """Parse template text; the top level must be a mapping."""
    data = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader subclass  # nosec B506
    if not isinstance(data, dict):
        raise ValueError("a CloudFormation template must be a YAML mapping")
    return data


def load_template(path: Path) -> dict[str, Any]:
    """Parse the template file at ``path``."""
    return loads_template(path.read_text(encoding="utf-8"))
