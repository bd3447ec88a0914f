"""SES v2: sending one raw MIME mail, and classifying what went wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from mailroom.adapters.aws import sesv2_client
from mailroom.errors import PermanentSendError, RetryableSendError, SendError

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

# The message or its recipient is bad: trying again cannot help.
PERMANENT_CODES = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})
THROTTLING_CODES = frozenset(
    {"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"}
)


def classify(exc: Exception) -> SendError:
    """Turn a botocore error into a retryable or a permanent SendError.

    Throttling ("Maximum sending rate exceeded"), 5xx, timeouts and anything unknown are
    retryable: a mail is never dropped on an error we do not understand. Configuration
    problems (unverified identity, paused account) are retryable too, so their tasks end
    in the dead-letter queue with the reason and can be redriven once fixed.
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", "")
        if code in THROTTLING_CODES or "Maximum sending rate exceeded" in message:
            return RetryableSendError(code, message or "throttled", throttled=True)
        if code in PERMANENT_CODES:
            return PermanentSendError(code, message)
        return RetryableSendError(code, message)
    if isinstance(exc, BotoCoreError):
        return RetryableSendError(type(exc).__name__, str(exc))
    return RetryableSendError(type(exc).__name__, str(exc))


class Mailer:
    """Sends raw MIME through SES v2 SendEmail (Content.Raw)."""

    def __init__(self, client: SESV2Client | None = None, configuration_set: str | None = None) -> None:
        self.client = client or sesv2_client()
        self.configuration_set = configuration_set

    def send(self, raw: bytes, from_address: str, to: str, tags: dict[str, str] | None = None) -> str:
        """Send one mail to one recipient; returns the SES message id or raises SendError."""
        kwargs = {
            "FromEmailAddress": from_address,
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [{"Name": name, "Value": value} for name, value in (tags or {}).items()],
        }
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set
        try:
            response = self.client.send_email(**kwargs)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError) as exc:
            raise classify(exc) from exc
        return response["MessageId"]
