"""Print each chaos run's counts at the end of the session (also when output is captured,
and from pytest-xdist's workers: a test records its line as a property of its report)."""

from __future__ import annotations

from typing import Any

REPORTS: list[str] = []


def pytest_runtest_logreport(report: Any) -> None:
    if report.when == "call":
        REPORTS.extend(str(value) for name, value in report.user_properties if name == "chaos")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("chaos")
        for line in REPORTS:
            terminalreporter.write_line(line)
