"""Publish the web app (web/) to a deployed stack: its bucket, then a CloudFront invalidation.

``make deploy`` runs it after ``sam deploy``::

    python scripts/publish_web.py [--config-env default|prod] [--stack NAME] [--region R] [--web-dir DIR]

1. The stack: ``--stack``, else ``stack_name`` of the config environment in samconfig.toml
   (``[<env>.global.parameters]`` or ``[<env>.deploy.parameters]``), whose ``region`` and
   ``profile`` are used too unless ``--region`` is given - as ``sam deploy`` would.
2. Its outputs ``WebBucketName`` and ``WebDistributionId`` (CloudFormation ``DescribeStacks``).
3. Every file under web/ (dotfiles and dot-folders skipped) is put with its Content-Type
   (text types with ``charset=utf-8``) and ``Cache-Control: no-cache``: file names carry no
   content hash, so browsers revalidate each load (a 304 when nothing changed). index.html
   goes last, after the modules it loads.
4. Objects in the bucket that are no longer in web/ are deleted.
5. One invalidation of ``/*`` (one path of the 1,000 free each month), so edges drop what
   they hold at once.

The standard library, boto3 and ``mailroom_local.web`` (the content types and the files, as
the local server serves them); the functions take ready clients, so tests run them under moto.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

# What a file is served with, and which files are served: one definition for this upload and
# for the local server (make run), so the two cannot differ.
from mailroom_local.web import CONTENT_TYPES, content_type, web_files

__all__ = ["CONTENT_TYPES", "PublishError", "Report", "content_type", "deployed_stack", "main", "publish", "web_files"]

ROOT = Path(__file__).resolve().parents[1]
WEB_DIR = ROOT / "web"
SAMCONFIG = ROOT / "samconfig.toml"
CACHE_CONTROL = "no-cache"
ENTRY = "index.html"


class PublishError(Exception):
    """Something that stops a publish before it changes anything (no stack, no outputs, no index.html)."""


@dataclass
class Report:
    """What :func:`publish` did."""

    bucket: str
    distribution_id: str
    uploaded: list[tuple[str, str, int]] = field(default_factory=list)  # key, content type, bytes
    deleted: list[str] = field(default_factory=list)
    invalidation_id: str = ""


def samconfig_parameters(config_env: str, samconfig: Path = SAMCONFIG) -> dict[str, Any]:
    """The ``global`` parameters of a config environment, with its ``deploy`` ones over them."""
    with samconfig.open("rb") as stream:
        config = tomllib.load(stream)
    environment = config.get(config_env)
    if not isinstance(environment, dict):
        raise PublishError(f"{samconfig.name} has no config environment [{config_env}]")
    parameters: dict[str, Any] = {}
    for command in ("global", "deploy"):
        parameters.update((environment.get(command) or {}).get("parameters") or {})
    return parameters


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    """The stack's outputs by key."""
    try:
        (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        raise PublishError(f"stack {stack}: {error}") from error
    return {output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs") or []}


def deployed_stack(
    config_env: str, stack: str | None, region: str | None, samconfig: Path, session: Any = None
) -> tuple[Any, str, dict[str, str]]:
    """The boto3 session, name and outputs of the stack ``make deploy`` deployed: ``stack``,
    else samconfig's ``stack_name`` (with its region and profile unless ``region`` is given)."""
    settings = {} if stack and region else samconfig_parameters(config_env, samconfig)
    name = stack or settings.get("stack_name")
    if not name:
        raise PublishError(f"no stack_name in [{config_env}] of {samconfig.name}; pass --stack")
    if session is None:
        session = boto3.session.Session(
            region_name=region or settings.get("region"), profile_name=settings.get("profile")
        )
    return session, str(name), stack_outputs(session.client("cloudformation"), str(name))


def publish(
    web_dir: Path,
    bucket: str,
    distribution_id: str,
    *,
    s3: Any,
    cloudfront: Any,
    say: Callable[[str], None] = print,
) -> Report:
    """Upload ``web_dir`` to ``bucket``, delete what is no longer there, invalidate ``/*``."""
    files = web_files(web_dir)
    if ENTRY not in files:
        raise PublishError(f"{web_dir} has no {ENTRY}: nothing published (it would empty the site)")
    report = Report(bucket=bucket, distribution_id=distribution_id)
    say(f"Publishing {web_dir} to s3://{bucket} (Cache-Control: {CACHE_CONTROL})")
    for key in [*(k for k in files if k != ENTRY), ENTRY]:  # the entry last, after what it loads
        body = files[key].read_bytes()
        kind = content_type(key)
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind, CacheControl=CACHE_CONTROL)
        report.uploaded.append((key, kind, len(body)))
        say(f"  put     {key}  ({kind}, {len(body)} bytes)")
    stale = sorted(set(_keys(s3, bucket)) - set(files))
    for batch in _chunks(stale, 1000):  # DeleteObjects takes up to 1,000 keys
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        if answer.get("Errors"):
            raise PublishError(f"could not delete {answer['Errors']}")
        report.deleted.extend(batch)
    for key in stale:
        say(f"  deleted {key}")
    invalidation = cloudfront.create_invalidation(
        DistributionId=distribution_id,
        InvalidationBatch={
            "Paths": {"Quantity": 1, "Items": ["/*"]},
            "CallerReference": f"publish-web-{time.time_ns()}",
        },
    )["Invalidation"]
    report.invalidation_id = invalidation["Id"]
    say(
        f"Invalidation {invalidation['Id']} of /* on distribution {distribution_id}: {invalidation['Status']} "
        f"({len(report.uploaded)} files put, {len(report.deleted)} deleted)"
    )
    return report


def _keys(s3: Any, bucket: str) -> Iterable[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents") or []:
            yield str(item["Key"])


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def main(argv: Sequence[str] | None = None, *, session: Any = None) -> int:
    parser = argparse.ArgumentParser(description="Publish web/ to the stack's bucket and invalidate its distribution.")
    parser.add_argument("--config-env", default="default", help="samconfig.toml environment (default: default)")
    parser.add_argument("--stack", help="the stack's name (default: stack_name of the config environment)")
    parser.add_argument("--region", help="the stack's region (default: samconfig's, else the AWS configuration's)")
    parser.add_argument("--web-dir", type=Path, default=WEB_DIR, help="what to publish (default: web/)")
    parser.add_argument("--samconfig", type=Path, default=SAMCONFIG, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        session, stack, outputs = deployed_stack(args.config_env, args.stack, args.region, args.samconfig, session)
        missing = [name for name in ("WebBucketName", "WebDistributionId") if name not in outputs]
        if missing:
            raise PublishError(f"stack {stack} has no output {', '.join(missing)}: deploy it first (sam deploy)")
        publish(
            args.web_dir,
            outputs["WebBucketName"],
            outputs["WebDistributionId"],
            s3=session.client("s3"),
            cloudfront=session.client("cloudfront"),
        )
    except PublishError as error:
        print(f"publish_web: {error}", file=sys.stderr)
        return 1
    if "WebUrl" in outputs:
        print(f"The web app: {outputs['WebUrl']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
