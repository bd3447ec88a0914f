"""Secrets Manager: the key that signs the links in mails.

The secret is read on first use, not at import (a registration never needs it), and kept
for ``ttl`` seconds, so a rotated key is picked up by warm environments too. Its value is
either the key itself (what the template's ``GenerateSecretString`` makes) or, to rotate
without breaking links already mailed, JSON ``{"current": "...", "previous": ["...", ...]}``:
the current key signs, every key verifies. The key never reaches logs or the environment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from mailroom.adapters.aws import CONFIG
from mailroom.adapters.cache import Refreshed
from mailroom.tokens import Tokens


def keys_of(secret_string: str) -> list[bytes]:
    """The signing keys in a secret's value, the signing key first."""
    text = secret_string.strip()
    if text.startswith("{"):
        value = json.loads(text)
        previous = value.get("previous") or []
        keys = [value["current"], *([previous] if isinstance(previous, str) else previous)]
        return [str(key).encode() for key in keys]
    return [text.encode()]


class LinkKeys:
    """``tokens()`` -> a Tokens signer built from the secret, cached for ``ttl`` seconds."""

    def __init__(
        self,
        secret_id: str,
        client: Any = None,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secret_id = secret_id
        self._client = client
        self._signer = Refreshed(self._read, ttl, clock)

    def _secretsmanager(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("secretsmanager", config=CONFIG)
        return self._client

    def _read(self) -> Tokens:
        value = self._secretsmanager().get_secret_value(SecretId=self.secret_id)["SecretString"]
        return Tokens(keys_of(value))

    def tokens(self) -> Tokens:
        return self._signer()
