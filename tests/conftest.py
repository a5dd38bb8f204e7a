"""Session-wide rules: a skipped test is a failure (CI must never pass by skipping)."""

from __future__ import annotations

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped:
        print(f"\nskipped tests fail the run: {', '.join(_skipped)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
