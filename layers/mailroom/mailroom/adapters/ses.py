"""SES v2: sending one raw MIME mail, and classifying what went wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ProxyConnectionError,
)

from mailroom.adapters.aws import sesv2_client
from mailroom.errors import PermanentSendError, RetryableSendError, SendError, UncertainSendError

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

# The message or its recipient is bad: trying again cannot help.
PERMANENT_CODES = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})
THROTTLING_CODES = frozenset(
    {"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"}
)
# The connection failed before the request could go out: SES cannot have seen the mail.
# Every other transport error (read timeout, closed connection, a broken response, TLS or
# HTTP errors) may come after SES accepted it: sending again could deliver it twice.
NOT_SENT_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)


def _sender_not_verified(message: str, from_address: str | None) -> bool:
    """A rejection that names the sender (or its domain) as an identity is the account's
    configuration, not the recipient's address: SES's "Email address is not verified. The
    following identities failed the check in region ...: <sender>", or "Did not have
    authority to send from email <sender>" (an identity deleted or not verified; moto's
    wording). A bad recipient - even one in the sender's domain - is named as itself."""
    if not from_address:
        return False
    lowered = message.lower()
    if not any(phrase in lowered for phrase in ("not verified", "authority to send from", "not authorized")):
        return False
    identities = {token.strip(".,;:()<>'\"") for token in lowered.split()}
    return from_address.lower() in identities or from_address.rpartition("@")[2].lower() in identities


def classify(exc: Exception, from_address: str | None = None) -> SendError:
    """Turn a botocore error into a retryable, permanent or uncertain SendError.

    - retryable: throttling ("Maximum sending rate exceeded"), SES's own answers of other
      errors (5xx and unknown codes), connection failures before the request went out, and
      problems of configuration (an unverified sender, a paused account): a mail is never
      dropped on an error an operator can fix; its task ends in the dead-letter queue with
      the reason and can be redriven once fixed;
    - permanent: the message or the recipient is bad (``MessageRejected``, ``BadRequest``);
    - uncertain: any other transport error - the request may have gone out and its answer
      been lost (read timeout, connection closed, TLS or HTTP errors): SES may have sent
      it, so it is not sent again (at most once).
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", "")
        if code in THROTTLING_CODES or "Maximum sending rate exceeded" in message:
            return RetryableSendError(code, message or "throttled", throttled=True)
        if code in PERMANENT_CODES and not _sender_not_verified(message, from_address):
            return PermanentSendError(code, message)
        return RetryableSendError(code, message)
    if isinstance(exc, NOT_SENT_ERRORS):
        return RetryableSendError(type(exc).__name__, str(exc))
    return UncertainSendError(type(exc).__name__, str(exc))


class Mailer:
    """Sends raw MIME through SES v2 SendEmail (Content.Raw).

    The SES client makes exactly one attempt per call (see ``adapters.aws``): a retry
    inside botocore after a lost answer could send the same mail twice. Retries happen
    through the queue, after the ledger has released the claim.
    """

    def __init__(self, client: SESV2Client | None = None, configuration_set: str | None = None) -> None:
        self.client = client or sesv2_client()
        self.configuration_set = configuration_set

    def send(self, raw: bytes, from_address: str, to: str, tags: dict[str, str] | None = None) -> str:
        """Send one mail to one recipient; returns the SES message id or raises SendError."""
        kwargs: dict[str, Any] = {
            "FromEmailAddress": from_address,
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [{"Name": name, "Value": value} for name, value in (tags or {}).items()],
        }
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set
        try:
            response = self.client.send_email(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise classify(exc, from_address) from exc
        return response["MessageId"]
