"""SSM Parameter Store: the web app's public URL, which the links in mails open.

The template writes the CloudFront URL (or the ``PublicUrl`` parameter) to an SSM parameter,
because a function cannot reference the distribution in its environment: the distribution
fronts the API, and the API's integrations reference the functions (a cycle). The value is
read on first use, not at import, and kept for ``ttl`` seconds. An explicit ``PUBLIC_URL``
(a custom domain, tests, ``sam local invoke``) wins and is never looked up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mailroom.adapters.aws import CONFIG
from mailroom.adapters.cache import Refreshed


class PublicUrl:
    """``PublicUrl(value, parameter)()`` -> the web app's URL: ``value`` if set, else the
    parameter's value, read once per ``ttl`` seconds."""

    def __init__(
        self,
        value: str = "",
        parameter: str = "",
        client: Any = None,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not value and not parameter:
            raise ValueError("a public URL or the name of the parameter holding it is needed")
        self.value = value
        self.parameter = parameter
        self._client = client
        self._url = Refreshed(self._read, ttl, clock)

    def _ssm(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("ssm", config=CONFIG)
        return self._client

    def _read(self) -> str:
        value = str(self._ssm().get_parameter(Name=self.parameter)["Parameter"]["Value"]).strip()
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"parameter {self.parameter} does not hold a URL")
        return value

    def __call__(self) -> str:
        return self.value or self._url()
