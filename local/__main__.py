"""``python -m mailroom_local``: run the application locally until Ctrl-C.

Options mirror ``sam local start-api`` where they overlap::

    python -m mailroom_local [--template template.yaml] [--port 3000] [--host 127.0.0.1]
                             [--region us-east-1] [--parameter-overrides Key=Value ...]
                             [--ses-max-send-rate 100]

``PORT`` sets the port when ``--port`` is not given, ``MAILROOM_LOCAL_SES_MAX_SEND_RATE``
the SES send rate when ``--ses-max-send-rate`` is not given. A template parameter
``PublicUrl`` that no override sets is the runtime's own URL. Ctrl-C (SIGINT) or SIGTERM
stops everything cleanly and exits 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .moto_ext import DEFAULT_MAX_SEND_RATE, MAX_SEND_RATE_ENV, resolve_max_send_rate
from .runtime import DEFAULT_PORT, PUBLIC_URL_PARAMETER, Runtime


def parse_overrides(values: list[str]) -> dict[str, str]:
    """``Key=Value`` items, or SAM's ``ParameterKey=Key,ParameterValue=Value`` form."""
    overrides: dict[str, str] = {}
    for item in values:
        if item.startswith("ParameterKey="):
            key_part, _, value_part = item.partition(",ParameterValue=")
            key, value = key_part.removeprefix("ParameterKey="), value_part
        else:
            key, sep, value = item.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(f"--parameter-overrides: {item!r} is not Key=Value")
        overrides[key] = value
    return overrides


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"a port is a number from 0 to 65535, not {text!r}")
    return int(text)


def _rate(text: str) -> float:
    try:
        return resolve_max_send_rate(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a send rate is a number of mails per second above 0, not {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mailroom_local", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--template", "-t", type=Path, default=Path("template.yaml"), help="SAM template (default: %(default)s)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", "-p", type=_port, default=None, help=f"port (default: $PORT or {DEFAULT_PORT})")
    parser.add_argument(
        "--region", default=None, help="AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1)"
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "template parameter values, e.g. NewsletterTimezone=Europe/Berlin "
            f"({PUBLIC_URL_PARAMETER}, if declared, defaults to this runtime's URL)"
        ),
    )
    parser.add_argument(
        "--ses-max-send-rate",
        type=_rate,
        default=None,
        metavar="RATE",
        help=(
            "mails per second that SES v2 GetAccount reports as SendQuota.MaxSendRate "
            f"(default: ${MAX_SEND_RATE_ENV} or {DEFAULT_MAX_SEND_RATE:g}; not enforced)"
        ),
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        port = args.port if args.port is not None else _port(os.environ.get("PORT") or str(DEFAULT_PORT))
        overrides = parse_overrides(args.parameter_overrides)
        ses_max_send_rate = resolve_max_send_rate(args.ses_max_send_rate)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    if not args.template.is_file():
        parser.error(f"no template at {args.template} (run from the project directory or pass --template)")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            print("still stopping...", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        runtime = Runtime(
            args.template,
            host=args.host,
            port=port,
            overrides=overrides,
            region=args.region,
            ses_max_send_rate=ses_max_send_rate,
        )
        runtime.start()
    except Exception as exc:
        print(f"mailroom_local: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        while not stop.wait(timeout=0.5):
            pass
        runtime.console.info("stopping (Ctrl-C)")
    finally:
        runtime.stop()
    runtime.console.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
