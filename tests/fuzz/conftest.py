"""Reports how many frames each fuzz layer fed, and the seed that reproduces the run."""

from __future__ import annotations

import pytest

from tests.fuzz import budget


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not budget.counted:
        return
    layers = ", ".join(f"{layer} {n:,}" for layer, n in sorted(budget.counted.items()))
    total = sum(budget.counted.values())
    seed = "derandomized" if budget.SEED is None else f"RECORDGATE_FUZZ_SEED={budget.SEED}"
    terminalreporter.write_line(f"fuzz frames: {layers}; total {total:,} ({seed})")
