"""Typed settings parsed once from environment variables, in handlers only.

Each function has its own settings class with exactly the variables its template entry
sets; logic never reads ``os.environ``, it receives values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Settings(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, populate_by_name=True, extra="ignore")

    stage: str = Field(default="dev", alias="STAGE")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Build from an environment mapping; a missing variable fails at cold start, loudly."""
        return cls.model_validate(dict(environ))


class _LinkSettings(_Settings):
    # the Secrets Manager secret (ARN or name) holding the key that signs links in mails
    token_secret_arn: str = Field(alias="TOKEN_SECRET_ARN")
    # a pending subscriber and its confirmation link expire after this many days
    confirmation_days: int = Field(default=7, ge=1, le=30, alias="CONFIRMATION_DAYS")


class RegistrationSettings(_LinkSettings):
    subscribers_table: str = Field(alias="SUBSCRIBERS_TABLE")
    welcome_queue_url: str = Field(alias="WELCOME_QUEUE_URL")
    sender_name: str = Field(default="Mailroom", alias="SENDER_NAME")  # shown on the link pages
    # sign-up rate limits (docs/abuse.md): fixed-window counters in this table, per hour
    rate_limits_table: str = Field(alias="RATE_LIMITS_TABLE")
    signups_per_address_per_hour: int = Field(default=3, ge=1, alias="SIGNUPS_PER_ADDRESS_PER_HOUR")
    signups_per_source_ip_per_hour: int = Field(default=20, ge=1, alias="SIGNUPS_PER_SOURCE_IP_PER_HOUR")


class _SenderSettings(_LinkSettings):
    results_table: str = Field(alias="RESULTS_TABLE")
    sender_address: str = Field(alias="SENDER_ADDRESS")
    sender_name: str = Field(default="Mailroom", alias="SENDER_NAME")
    # the SES configuration set every mail is sent with (its events feed SesEventsFunction)
    configuration_set: str | None = Field(default=None, alias="CONFIGURATION_SET")
    # the web app's URL (the links in mails open it); empty = read PUBLIC_URL_PARAMETER (SSM),
    # which the template fills with the CloudFront URL (the functions cannot name the
    # distribution directly: it fronts the API, which names the functions)
    public_url: str = Field(default="", alias="PUBLIC_URL")
    public_url_parameter: str = Field(default="", alias="PUBLIC_URL_PARAMETER")

    @model_validator(mode="after")
    def _has_public_url(self) -> Self:
        if not self.public_url and not self.public_url_parameter:
            raise ValueError("PUBLIC_URL or PUBLIC_URL_PARAMETER must be set")
        return self


class WelcomeWorkerSettings(_SenderSettings):
    subscribers_table: str = Field(alias="SUBSCRIBERS_TABLE")
    welcome_queue_url: str = Field(alias="WELCOME_QUEUE_URL")
    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL")


class NewsletterWorkerSettings(_SenderSettings):
    campaigns_table: str = Field(alias="CAMPAIGNS_TABLE")
    subscribers_table: str = Field(alias="SUBSCRIBERS_TABLE")
    newsletter_queue_url: str = Field(alias="NEWSLETTER_QUEUE_URL")
    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL")
    # 0: the account's rate (SES GetAccount); > 0: never faster than this, in mails per second
    max_send_rate: float = Field(default=0.0, ge=0, alias="MAX_SEND_RATE")
    # how many invocations of this worker may run at once (the event source mapping's cap)
    max_concurrency: int = Field(default=2, ge=1, alias="WORKER_MAX_CONCURRENCY")
    # threads sending at once within one invocation
    send_threads: int = Field(default=64, ge=1, le=64, alias="SEND_THREADS")


class _CampaignSettings(_Settings):
    campaigns_table: str = Field(alias="CAMPAIGNS_TABLE")
    fanout_queue_url: str = Field(alias="FANOUT_QUEUE_URL")


class _StartingSettings(_CampaignSettings):
    """Who starts campaigns chooses how many scan segments their fan-out has."""

    fanout_segments: int = Field(default=4, ge=1, le=64, alias="FANOUT_SEGMENTS")


class DispatcherSettings(_StartingSettings):
    pass


class FanoutSettingsEnv(_CampaignSettings):
    subscribers_table: str = Field(alias="SUBSCRIBERS_TABLE")
    results_table: str = Field(alias="RESULTS_TABLE")
    newsletter_queue_url: str = Field(alias="NEWSLETTER_QUEUE_URL")
    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL")
    recipients_per_task: int = Field(default=50, ge=1, le=100, alias="RECIPIENTS_PER_TASK")
    page_size: int = Field(default=500, ge=10, le=1000, alias="FANOUT_PAGE_SIZE")


class AdminSettings(_StartingSettings, _SenderSettings):
    subscribers_table: str = Field(alias="SUBSCRIBERS_TABLE")
    # the Cognito group whose members may use the admin routes (mailroom.authz)
    admin_group: str = Field(default="admins", min_length=1, alias="ADMIN_GROUP")
    # dead-letter queues and the queues their messages are redriven to
    welcome_queue_url: str = Field(alias="WELCOME_QUEUE_URL")
    welcome_dead_letter_queue_url: str = Field(alias="WELCOME_DLQ_URL")
    newsletter_queue_url: str = Field(alias="NEWSLETTER_QUEUE_URL")
    newsletter_dead_letter_queue_url: str = Field(alias="NEWSLETTER_DLQ_URL")
    fanout_dead_letter_queue_url: str = Field(alias="FANOUT_DLQ_URL")


class SesEventsSettings(_Settings):
    subscribers_table: str = Field(alias="SUBSCRIBERS_TABLE")
    results_table: str = Field(alias="RESULTS_TABLE")
    campaigns_table: str = Field(alias="CAMPAIGNS_TABLE")
    # the queue the events come from: an event whose record is not ready comes again sooner
    ses_events_queue_url: str = Field(alias="SES_EVENTS_QUEUE_URL")


class AuthSettings(_Settings):
    # the admins' user pool's app client the console signs in with (USER_PASSWORD_AUTH)
    user_pool_client_id: str = Field(min_length=1, alias="USER_POOL_CLIENT_ID")
