"""Hands each fuzz test's frame counts to the summary (``tests/conftest.py`` prints it).

Under pytest-xdist a test runs in a worker process, whose counts the session's summary (in the
controller) cannot see: they travel in the test's report instead.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.fuzz import budget


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if budget.counted:
        report.user_properties.append(("fuzz_frames", (dict(budget.counted), budget.SEED)))
        budget.counted.clear()
    return report
