"""Print each chaos run's counts at the end of the session (also when output is captured)."""

from __future__ import annotations

from typing import Any

from tests.chaos.test_chaos import REPORTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("chaos")
        for line in REPORTS:
            terminalreporter.write_line(line)
