"""What moto lacks and the application needs: SES v2 ``GetAccount`` (and, via
:mod:`.moto_dynamodb`, atomic conditional writes and item-level transactions in DynamoDB).

moto 5.2.5 does not implement ``GetAccount`` (``GET /v2/email/account``): under
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
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from . import moto_dynamodb

__all__ = [
    "DEFAULT_MAX_SEND_RATE",
    "MAX_24_HOUR_SEND",
    "MAX_SEND_RATE_ENV",
    "install",
    "reported_max_send_rate",
    "resolve_max_send_rate",
]

MAX_SEND_RATE_ENV = "MAILROOM_LOCAL_SES_MAX_SEND_RATE"
DEFAULT_MAX_SEND_RATE = 100.0
MAX_24_HOUR_SEND = 50_000.0

_ACCOUNT_PATH = "{0}/v2/email/account$"  # moto's url_paths form: {0} is the endpoint
_settings = {"max_send_rate": DEFAULT_MAX_SEND_RATE}


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
    moto_dynamodb.install()
    return rate


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
