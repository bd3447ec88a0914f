"""Shared fixtures: moto-backed AWS built from template.yaml, handlers loaded fresh, mail readers.

The tables, queues and SES identities are created from the template itself (the same
code the embedded runtime uses), so a test can never use a schema the stack lacks.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from moto import mock_aws

# Powertools' logger and metrics are made once, when mailroom.observability is first
# imported (in Lambda, after the function's environment is set). Give tests that import
# the logic directly the same namespace the template sets.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Mailroom")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "mailroom-tests")

from mailroom_local.moto_ext import install as install_moto_extensions
from mailroom_local.template import Stack
from tests.support import ACCOUNT, REGION, ROOT, TEMPLATE

# SES v2 GetAccount (which moto lacks) reports a rate that never slows a test down.
install_moto_extensions(max_send_rate=1000.0)


# Each chaos run's counts, printed at the end of the session: a test records its line as a
# property of its report, which reaches this process from pytest-xdist's workers too (the
# hooks live here, in the conftest every process loads, not in tests/chaos/).
CHAOS_REPORTS: list[str] = []


SCHEMATHESIS_REPORTS: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        CHAOS_REPORTS.extend(str(value) for name, value in report.user_properties if name == "chaos")
        SCHEMATHESIS_REPORTS.extend(str(value) for name, value in report.user_properties if name == "schemathesis")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for title, lines in (("chaos", CHAOS_REPORTS), ("schemathesis", SCHEMATHESIS_REPORTS)):
        if lines:
            terminalreporter.section(title)
            for line in lines:
                terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach a real AWS account from a unit test."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def stack() -> Iterator[Stack]:
    """moto in-process, with every table, queue and identity of template.yaml created."""
    with mock_aws():
        loaded = Stack.load(TEMPLATE)
        loaded.provision()
        yield loaded


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test-function"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "2026/11/28/[$LATEST]test"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext(aws_request_id=str(uuid.uuid4()))


FUNCTION_DIRS = {
    "RegistrationFunction": "registration",
    "WelcomeWorkerFunction": "welcome_worker",
    "NewsletterDispatcherFunction": "newsletter_dispatcher",
    "NewsletterWorkerFunction": "newsletter_worker",
    "FanoutFunction": "fanout",
    "AdminFunction": "admin",
    "AuthFunction": "auth",
    "SesEventsFunction": "ses_events",
}


@pytest.fixture
def load_function(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ModuleType]:
    """Import functions/<dir>/app.py afresh with the function's environment from the template."""

    def load(logical_id: str, **env: str) -> ModuleType:
        for name, value in {**stack.function_env(logical_id), **env}.items():
            monkeypatch.setenv(name, value)
        path = ROOT / "functions" / FUNCTION_DIRS[logical_id] / "app.py"
        module_name = f"app_{FUNCTION_DIRS[logical_id]}_{uuid.uuid4().hex}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module

    return load
