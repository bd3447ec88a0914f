"""Signed tokens for the links in mails (confirm a subscription, unsubscribe).

A token names a subscriber, says what it is for and until when, and is signed:

    token = base64url(payload) "." base64url(HMAC-SHA256(key, purpose "\\n" payload))
    payload = {"v": 1, "s": <subscriber id>, "e": <expiry, epoch seconds; 0 = never>}

The purpose is inside the MAC, not the payload: a confirmation token is no unsubscribe
token, however it is presented. Verification recomputes the MAC with each key (the first
signs; the others are still accepted, so a key can be rotated without breaking links
already mailed) and compares in constant time (``hmac.compare_digest``). Every way a token
can be wrong - malformed, forged, altered, for another purpose, expired - raises
:class:`TokenError` with a ``reason`` for the logs; the message a caller shows reveals
none of it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["MIN_KEY_BYTES", "TokenError", "Tokens", "Verified"]

MIN_KEY_BYTES = 32
MAX_TOKEN_CHARS = 512
_VERSION = 1
# base64url without padding: Python's decoder would skip other characters silently, and a
# token altered that way must not verify
_PART = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(ValueError):
    """The token is not valid; ``reason`` says why (for logs only, never for the caller)."""

    def __init__(self, reason: str) -> None:
        super().__init__("invalid or expired link")
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    subscriber_id: str
    expires_at: int  # epoch seconds; 0 = never


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    """Signs and verifies tokens with ``keys`` (the first signs; all verify)."""

    def __init__(self, keys: Sequence[bytes], clock: Callable[[], float] = time.time) -> None:
        if not keys or any(len(key) < MIN_KEY_BYTES for key in keys):
            raise ValueError(f"token keys must be at least {MIN_KEY_BYTES} bytes")
        self.keys = list(keys)
        self.clock = clock

    def sign(self, purpose: str, subscriber_id: str, valid_seconds: int | None = None) -> str:
        expires = 0 if valid_seconds is None else int(self.clock()) + valid_seconds
        payload = json.dumps({"v": _VERSION, "s": subscriber_id, "e": expires}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(self.keys[0], purpose, payload))}"

    def verify(self, purpose: str, token: str) -> Verified:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise TokenError("malformed")
        encoded_payload, encoded_mac = token.split(".")
        if not (_PART.fullmatch(encoded_payload) and _PART.fullmatch(encoded_mac)):
            raise TokenError("malformed")
        try:
            payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
        except (binascii.Error, ValueError):
            raise TokenError("malformed") from None
        if not any(hmac.compare_digest(mac, self._mac(key, purpose, payload)) for key in self.keys):
            raise TokenError("bad signature (forged, altered, or for another purpose)")
        try:
            fields = json.loads(payload)
            subscriber_id, expires = fields["s"], fields["e"]
        except (ValueError, KeyError, TypeError):
            raise TokenError("malformed payload") from None
        if fields.get("v") != _VERSION or not isinstance(subscriber_id, str) or not isinstance(expires, int):
            raise TokenError("malformed payload")
        if expires and self.clock() >= expires:
            raise TokenError("expired")
        return Verified(subscriber_id, expires)

    @staticmethod
    def _mac(key: bytes, purpose: str, payload: bytes) -> bytes:
        return hmac.new(key, purpose.encode() + b"\n" + payload, hashlib.sha256).digest()
