"""The local AWS: moto in server mode, in this process, on loopback, with fake credentials.

Everything that talks to it (the runtime's pollers, the sandboxes' handlers via
``AWS_ENDPOINT_URL``) uses the same endpoint, account ``123456789012`` and region
(``AWS_REGION``/``AWS_DEFAULT_REGION``, default ``us-east-1``). Credentials are the
well-known fake ``testing`` ones, so nothing can ever reach a real account.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from typing import Any

import boto3
from botocore.config import Config

__all__ = ["FAKE_CREDENTIALS", "MotoServer", "client", "default_region"]

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
}

# One client serves every poller thread (up to 8 per function, each long-polling): more
# connections than botocore's default pool of 10.
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30, max_pool_connections=64
)


def default_region() -> str:
    """AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1 (what the Lambda runtime sets)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def client(service: str, endpoint_url: str, region: str, user_agent_extra: str | None = None) -> Any:
    """A boto3 client for the local endpoint with the fake credentials (never the user's);
    ``user_agent_extra`` tells its requests apart (e.g. the emulated EventBridge's)."""
    config = (
        _CLIENT_CONFIG if user_agent_extra is None else _CLIENT_CONFIG.merge(Config(user_agent_extra=user_agent_extra))
    )
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        config=config,
    )


class MotoServer:
    """``moto.server.ThreadedMotoServer`` on 127.0.0.1 and a free port.

    moto's backends are process-global: the server starts from a clean slate (``reset``),
    and only one runtime per process should use it at a time.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.url = ""

    def start(self) -> str:
        # moto's server logs every request through werkzeug's logger: far too chatty here.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self.reset()
        return self.url

    def reset(self) -> None:
        """Forget every resource and sent mail (moto's ``/moto-api/reset``)."""
        url = f"{self.url}/moto-api/reset"
        request = urllib.request.Request(url, method="POST", data=b"")  # noqa: S310 - our loopback http URL
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our loopback http URL  # nosec B310
            response.read()

    def stop(self) -> None:
        self._server.stop()
