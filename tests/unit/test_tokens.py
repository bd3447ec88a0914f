"""Signed link tokens: round trip, and every way a token can be wrong."""

from __future__ import annotations

import base64
import json
from unittest import mock

import pytest

from mailroom.adapters.secrets import LinkKeys, keys_of
from mailroom.tokens import MAX_TOKEN_CHARS, TokenError, Tokens

KEY = b"k" * 32
OTHER = b"o" * 32


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_token_names_its_subscriber_and_verifies() -> None:
    tokens = Tokens([KEY])
    token = tokens.sign("unsubscribe", "sub-1")
    assert tokens.verify("unsubscribe", token).subscriber_id == "sub-1"
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")  # URL-safe


def test_a_token_expires() -> None:
    clock = Clock()
    tokens = Tokens([KEY], clock=clock)
    token = tokens.sign("confirm", "sub-1", valid_seconds=3600)
    clock.now += 3599
    assert tokens.verify("confirm", token).expires_at == 1_800_003_600
    clock.now += 1
    with pytest.raises(TokenError) as raised:
        tokens.verify("confirm", token)
    assert raised.value.reason == "expired"
    assert str(raised.value) == "invalid or expired link"  # says nothing more to the caller


def test_a_token_for_one_purpose_is_refused_for_another() -> None:
    tokens = Tokens([KEY])
    with pytest.raises(TokenError, match="invalid"):
        tokens.verify("unsubscribe", tokens.sign("confirm", "sub-1"))


def test_a_token_signed_with_another_key_is_forged() -> None:
    with pytest.raises(TokenError) as raised:
        Tokens([KEY]).verify("confirm", Tokens([OTHER]).sign("confirm", "sub-1"))
    assert "bad signature" in raised.value.reason


def test_an_altered_payload_is_refused() -> None:
    tokens = Tokens([KEY])
    payload, mac = tokens.sign("unsubscribe", "sub-1").split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps(fields | {"s": "sub-2"}).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError):
        tokens.verify("unsubscribe", f"{forged}.{mac}")


def test_keys_rotate_without_breaking_mailed_links() -> None:
    old = Tokens([OTHER]).sign("unsubscribe", "sub-1")
    rotated = Tokens([KEY, OTHER])
    assert rotated.verify("unsubscribe", old).subscriber_id == "sub-1"
    assert Tokens([KEY]).verify("unsubscribe", rotated.sign("unsubscribe", "sub-1")).subscriber_id == "sub-1"


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "a.b.c", "!!!.???", "e30.", "x" * (MAX_TOKEN_CHARS + 1), "bm90IGpzb24.AAAA"],
)
def test_malformed_tokens_are_refused_not_crashed_on(token: str) -> None:
    with pytest.raises(TokenError):
        Tokens([KEY]).verify("unsubscribe", token)


def test_a_validly_signed_but_malformed_payload_is_refused() -> None:
    tokens = Tokens([KEY])
    for payload in (b"[]", b'{"v": 1}', b'{"v": 2, "s": "x", "e": 0}', b'{"v": 1, "s": 5, "e": 0}', b"not json"):
        token = (
            f"{base64.urlsafe_b64encode(payload).rstrip(b'=').decode()}."
            + base64.urlsafe_b64encode(tokens._mac(KEY, "confirm", payload)).rstrip(b"=").decode()
        )
        with pytest.raises(TokenError) as raised:
            tokens.verify("confirm", token)
        assert raised.value.reason == "malformed payload"


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Tokens([b"short"])
    with pytest.raises(ValueError):
        Tokens([])


@pytest.mark.parametrize(
    "alter",
    [
        lambda p, m: f"{p[:4]}!!!!{p[4:]}.{m}",  # characters the base64 decoder would skip
        lambda p, m: f"{p}==.{m}",  # padding
        lambda p, m: f"{p}.{m} ",
        lambda p, m: f"{p}.{m[:5]}\n{m[5:]}",
        lambda p, m: f"{p}.{m}".replace("-", "+").replace("_", "/") if ("-" in p + m or "_" in p + m) else f"{p}+.{m}",
    ],
    ids=["skipped-characters", "padding", "trailing-space", "line-break", "standard-alphabet"],
)
def test_a_token_altered_in_ways_the_decoder_would_forgive_is_refused(alter: object) -> None:
    tokens = Tokens([KEY])
    payload, mac = tokens.sign("unsubscribe", "sub-1").split(".")
    assert callable(alter)
    altered = alter(payload, mac)
    assert altered != f"{payload}.{mac}"
    with pytest.raises(TokenError):
        tokens.verify("unsubscribe", altered)


def test_the_secret_holds_one_key_or_a_rotation() -> None:
    assert keys_of("a" * 40) == [b"a" * 40]
    assert keys_of('{"current": "' + "n" * 40 + '", "previous": ["' + "o" * 40 + '"]}') == [b"n" * 40, b"o" * 40]
    assert keys_of('{"current": "' + "n" * 40 + '", "previous": "' + "o" * 40 + '"}') == [b"n" * 40, b"o" * 40]


def test_the_link_key_is_read_once_per_ttl() -> None:
    client = mock.Mock()
    client.get_secret_value.return_value = {"SecretString": "k" * 40}
    now = [0.0]
    keys = LinkKeys("LinkSigningSecret", client=client, ttl=300, clock=lambda: now[0])
    first = keys.tokens()
    now[0] = 299.0
    assert keys.tokens() is first and client.get_secret_value.call_count == 1
    now[0] = 300.0
    assert keys.tokens() is not first and client.get_secret_value.call_count == 2
    client.get_secret_value.assert_called_with(SecretId="LinkSigningSecret")
