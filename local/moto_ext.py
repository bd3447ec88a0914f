"""What moto lacks and the application needs: SES v2 ``GetAccount``, the configuration set
and tags of a ``SendEmail``, Cognito's answer to an unknown sign-in session, CloudWatch's
percentile statistics in ``GetMetricData`` (and,
via :mod:`.moto_dynamodb`, atomic conditional writes and
item-level transactions in DynamoDB).

moto 5.2.6 does not implement ``GetAccount`` (``GET /v2/email/account``): under
``mock_aws()`` boto3's ``get_account()`` fails with "The get_account action has not been
implemented", through moto's server with a 404 (its Flask routes do not cover the path).
:func:`install` adds ``get_account`` to moto's ``SESV2Response`` and the path to its SES v2
routes, so it works wherever moto answers in this process: under ``mock_aws()`` and in a
``ThreadedMotoServer`` started after it (the runtime's). The answer has AWS's shape for an
account out of the sandbox, in good standing::

    {"DedicatedIpAutoWarmupEnabled": false, "EnforcementStatus": "HEALTHY",
     "ProductionAccessEnabled": true, "SendingEnabled": true,
     "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 100.0, "SentLast24Hours": 3.0}}

``MaxSendRate`` (mails per second) is the ``max_send_rate`` given to :func:`install`, else
``$MAILROOM_LOCAL_SES_MAX_SEND_RATE``, else 100. moto does not enforce it: it is only what
``GetAccount`` reports. ``SentLast24Hours`` counts the mails moto's SES holds for the
account and region (all of them: moto keeps no send times, and emptying the local outbox
empties it).

Install it before the first ``GetAccount``, e.g. in a test's ``conftest.py``::

    from mailroom_local.moto_ext import install as install_moto_extensions

    install_moto_extensions()

Installing again only changes the rate. Should a later moto implement ``GetAccount``
itself, its implementation is kept.

moto 5.2.6 accepts a ``SendEmail``'s ``ConfigurationSetName`` and ``EmailTags`` and forgets
them: it publishes no events. :func:`install` also wraps ``SESV2Response.send_email`` so
that every accepted send with a configuration set is handed, as an :class:`SesSend`, to the
listeners added by :func:`add_send_listener` (the runtime's SES event publisher,
:mod:`.ses_events`). A listener runs in moto's request thread: it must be quick (queue the
work) and never raise; an error in one is swallowed so the send still succeeds, as in SES.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import moto_dynamodb

__all__ = [
    "DEFAULT_MAX_SEND_RATE",
    "MAX_24_HOUR_SEND",
    "MAX_SEND_RATE_ENV",
    "SesSend",
    "add_send_listener",
    "install",
    "remove_send_listener",
    "reported_max_send_rate",
    "resolve_max_send_rate",
]

MAX_SEND_RATE_ENV = "MAILROOM_LOCAL_SES_MAX_SEND_RATE"
DEFAULT_MAX_SEND_RATE = 100.0
MAX_24_HOUR_SEND = 50_000.0

_ACCOUNT_PATH = "{0}/v2/email/account$"  # moto's url_paths form: {0} is the endpoint
_settings = {"max_send_rate": DEFAULT_MAX_SEND_RATE}
_WRAPPED = "_mailroom_local_listens"
_listeners: list[Callable[[SesSend], None]] = []
_listeners_lock = threading.Lock()
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SesSend:
    """One mail SES v2 ``SendEmail`` accepted with a configuration set: what SES's event
    publishing needs and moto does not keep."""

    message_id: str
    source: str
    destinations: list[str]
    configuration_set: str
    account_id: str
    region: str
    tags: dict[str, str] = field(default_factory=dict)
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def add_send_listener(listener: Callable[[SesSend], None]) -> None:
    """Call ``listener`` with every send moto accepts with a configuration set (see the module docstring)."""
    with _listeners_lock:
        _listeners.append(listener)


def remove_send_listener(listener: Callable[[SesSend], None]) -> None:
    with _listeners_lock:
        if listener in _listeners:
            _listeners.remove(listener)


def resolve_max_send_rate(value: float | None = None) -> float:
    """The rate to report: ``value``, else ``$MAILROOM_LOCAL_SES_MAX_SEND_RATE``, else 100.

    Raises ``ValueError`` unless it is a finite number above 0.
    """
    source = "max_send_rate"
    if value is None:
        text = os.environ.get(MAX_SEND_RATE_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_SEND_RATE
        source = MAX_SEND_RATE_ENV
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{MAX_SEND_RATE_ENV}={text!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{source} must be a number of mails per second above 0, not {value!r}")
    return float(value)


def install(max_send_rate: float | None = None) -> float:
    """Add SES v2 ``GetAccount`` to moto (idempotent); returns the ``MaxSendRate`` it reports.

    Call it before starting a moto server: the server builds its routes on its first request.
    """
    from moto.sesv2 import urls
    from moto.sesv2.responses import SESV2Response

    rate = resolve_max_send_rate(max_send_rate)
    _settings["max_send_rate"] = rate
    if getattr(SESV2Response, "get_account", None) is None:
        setattr(SESV2Response, "get_account", _get_account)  # noqa: B010 - moto has no such attribute to type
    urls.url_paths.setdefault(_ACCOUNT_PATH, SESV2Response.dispatch)
    if not getattr(SESV2Response.send_email, _WRAPPED, False):
        setattr(SESV2Response, "send_email", _listening(SESV2Response.send_email))  # noqa: B010 - a method replaced
    _install_cognito_sessions()
    _install_cloudwatch_percentiles()
    moto_dynamodb.install()
    return rate


def _install_cognito_sessions() -> None:
    """Cognito answers a challenge response with an unknown or expired session with
    ``NotAuthorizedException`` ("Invalid session for the user"); moto 5.2.6 says
    ``ResourceNotFoundException``, which in AWS means the pool or client is missing (a fault
    of ours, a 503). Make moto answer as Cognito does (idempotent)."""
    from moto.cognitoidp.exceptions import NotAuthorizedError
    from moto.cognitoidp.models import CognitoIdpBackend

    respond = CognitoIdpBackend.respond_to_auth_challenge
    if getattr(respond, _WRAPPED, False):
        return

    def respond_to_auth_challenge(
        self: Any, session: str, client_id: str, challenge_name: str, challenge_responses: dict[str, str]
    ) -> Any:
        known = session in self.sessions or challenge_name == "PASSWORD_VERIFIER"  # SRP keeps no session
        if not known:
            raise NotAuthorizedError("Invalid session for the user, session is expired.")
        return respond(self, session, client_id, challenge_name, challenge_responses)

    setattr(respond_to_auth_challenge, _WRAPPED, True)
    setattr(CognitoIdpBackend, "respond_to_auth_challenge", respond_to_auth_challenge)  # noqa: B010 - a method replaced


_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d{1,3})?)")


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``th percentile of ``values`` (not empty): the smallest value with at
    least ``p`` percent of the values at or below it. CloudWatch's own percentiles are
    estimates of the same quantity."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _install_cloudwatch_percentiles() -> None:
    """CloudWatch answers ``GetMetricData`` with the statistics ``p50``, ``p95``, ``p99.9``...
    moto 5.2.6 knows only Sum, Average, Minimum, Maximum and SampleCount, and answers a
    percentile with a null value. Compute percentiles over the period's single values
    (idempotent)."""
    from moto.cloudwatch.models import Statistics

    statistic = Statistics.get_statistics_for_type
    if getattr(statistic, _WRAPPED, False):
        return

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        match = _PERCENTILE.fullmatch(stat)
        if match is None:
            return statistic(self, stat)
        values = self.metric_single_values_list
        return percentile(values, float(match.group(1))) if values else None

    setattr(get_statistics_for_type, _WRAPPED, True)
    setattr(Statistics, "get_statistics_for_type", get_statistics_for_type)  # noqa: B010 - a method replaced


def reported_max_send_rate() -> float:
    """The ``MaxSendRate`` that ``GetAccount`` reports now (set by the last :func:`install`)."""
    return _settings["max_send_rate"]


def _get_account(self: Any) -> str:
    """``GetAccount`` for moto's ``SESV2Response`` (``self``): the account's sending status."""
    from moto.ses.models import ses_backends

    sent = len(ses_backends[self.current_account][self.region].sent_messages)
    return json.dumps(
        {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": True,
            "SendQuota": {
                "Max24HourSend": MAX_24_HOUR_SEND,
                "MaxSendRate": _settings["max_send_rate"],
                "SentLast24Hours": float(sent),
            },
            "SendingEnabled": True,
        }
    )


def _listening(send_email: Callable[[Any], str]) -> Callable[[Any], str]:
    """moto's ``send_email`` that also tells the listeners about a send with a configuration set."""

    def wrapper(self: Any) -> str:
        answer = send_email(self)  # raises on a refused send: no listener hears of it
        with _listeners_lock:
            listeners = list(_listeners)
        if listeners:
            params = json.loads(self.body)
            configuration_set = params.get("ConfigurationSetName")
            if configuration_set:
                destination = params.get("Destination") or {}
                send = SesSend(
                    message_id=str(json.loads(answer)["MessageId"]),
                    source=str(params.get("FromEmailAddress") or ""),
                    destinations=[
                        str(address)
                        for kind in ("ToAddresses", "CcAddresses", "BccAddresses")
                        for address in destination.get(kind) or []
                    ],
                    configuration_set=str(configuration_set),
                    account_id=str(self.current_account),
                    region=str(self.region),
                    tags={str(tag["Name"]): str(tag["Value"]) for tag in params.get("EmailTags") or []},
                )
                for listener in listeners:
                    try:
                        listener(send)
                    except Exception:  # a listener must never fail the send
                        _log.exception("an SES send listener failed")
        return answer

    setattr(wrapper, _WRAPPED, True)
    return wrapper
