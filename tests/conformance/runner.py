"""Run the conformance suite in a subprocess and summarise the outcome."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class SuiteRun:
    returncode: int
    output: str
    stdout: str = ""

    def count(self, word: str) -> int:
        """The number of tests with this outcome, from pytest's summary line."""
        summaries = [line for line in self.stdout.splitlines() if re.search(r" in [\d.]+s", line)]
        match = re.search(rf"(\d+) {word}", summaries[-1]) if summaries else None
        return int(match.group(1)) if match else 0

    def skipped_lacking(self, capability: str) -> int:
        """How many tests were skipped because the connector lacks ``capability`` (from the
        ``-rs`` summary: ``SKIPPED [n] file:line: connector 'x' lacks capabilities: a, b``)."""
        pattern = (
            rf"^SKIPPED \[(\d+)\] .*lacks capabilities: (?:.*, )?{re.escape(capability)}(?:,|$)"
        )
        return sum(int(n) for n in re.findall(pattern, self.output, flags=re.MULTILINE))

    @property
    def failed_tests(self) -> list[str]:
        # A node id may hold spaces (parametrize ids); pytest ends it with " - " and a message.
        return re.findall(r"^FAILED (.+?)(?: - .*)?$", self.output, flags=re.MULTILINE)


def run_suite(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 300
) -> SuiteRun:
    # -n 0: one process; the suite under test runs inside a test that already has a worker
    command = [sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider", "-n", "0"]
    command += args
    proc = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return SuiteRun(proc.returncode, proc.stdout + proc.stderr, proc.stdout)
