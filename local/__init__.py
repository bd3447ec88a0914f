"""Mailroom's embedded local runtime: the whole application on one machine (moto, no Docker).

``python -m mailroom_local`` runs it; tests use :class:`Runtime` and :class:`Stack`::

    from . import Runtime, Stack

Imports are lazy so that a function's execution environment (a child process that imports
``mailroom_local.sandbox_child``) does not pay for boto3 and moto.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import Runtime
    from .template import Stack

__all__ = ["Runtime", "Stack"]


def __getattr__(name: str) -> Any:
    if name == "Runtime":
        from .runtime import Runtime

        return Runtime
    if name == "Stack":
        from .template import Stack

        return Stack
    raise AttributeError(f"module 'mailroom_local' has no attribute {name!r}")
