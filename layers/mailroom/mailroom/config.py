"""Typed settings parsed once from environment variables, in handlers only.

Each function has its own settings class with exactly the variables its template entry
sets; logic never reads ``os.environ``, it receives values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    stage: str = Field(default="dev", alias="STAGE")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Build from an environment mapping; a missing variable fails at cold start, loudly."""
        return cls.model_validate(dict(environ))


class RegistrationSettings(_Settings):
    subscribers_table: str = Field(alias="SUBSCRIBERS_TABLE")
    welcome_queue_url: str = Field(alias="WELCOME_QUEUE_URL")


class _SenderSettings(_Settings):
    results_table: str = Field(alias="RESULTS_TABLE")
    sender_address: str = Field(alias="SENDER_ADDRESS")
    sender_name: str = Field(default="Mailroom", alias="SENDER_NAME")


class WelcomeWorkerSettings(_SenderSettings):
    subscribers_table: str = Field(alias="SUBSCRIBERS_TABLE")


class NewsletterWorkerSettings(_SenderSettings):
    pass


class DispatcherSettings(_Settings):
    subscribers_table: str = Field(alias="SUBSCRIBERS_TABLE")
    newsletter_queue_url: str = Field(alias="NEWSLETTER_QUEUE_URL")
    timezone: str = Field(default="UTC", alias="NEWSLETTER_TIMEZONE")
    recipients_per_task: int = Field(default=50, ge=1, le=100, alias="RECIPIENTS_PER_TASK")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value
