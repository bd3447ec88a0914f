"""Registration input: address normalization and rejection, name rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mailroom.models import Registration, normalize_email


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Ada@Example.COM", "ada@example.com"),
        ("  ada@example.com ", "ada@example.com"),
        ("x@bücher.de", "x@xn--bcher-kva.de"),
        ("x@XN--BCHER-KVA.de", "x@xn--bcher-kva.de"),
    ],
)
def test_the_same_address_in_another_case_or_script_is_one_subscriber(given: str, stored: str) -> None:
    assert Registration(email=given).email == stored


@pytest.mark.parametrize(
    "bad", ["plain", "a@b", "@example.com", "a@@example.com", "ü@example.com", "a" * 250 + "@example.com", "a b@c.de"]
)
def test_malformed_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        normalize_email(bad)


def test_name_is_optional_trimmed_and_single_line() -> None:
    assert Registration(email="a@example.com").name is None
    assert Registration(email="a@example.com", name="  Ada  ").name == "Ada"
    assert Registration(email="a@example.com", name="   ").name is None
    with pytest.raises(ValidationError, match="control characters"):
        Registration(email="a@example.com", name="Ada\r\nBcc: x@example.com")
    with pytest.raises(ValidationError):
        Registration(email="a@example.com", name="x" * 101)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Registration.model_validate({"email": "a@example.com", "role": "admin"})
