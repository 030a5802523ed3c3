"""``recordgate hash``: the console script prints a hash the users file accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.auth.passwords import check_format, verify_password

RECORDGATE = str(Path(sys.executable).parent / "recordgate")


def test_hash_from_stdin_and_from_the_argument() -> None:
    proc = subprocess.run(
        [RECORDGATE, "hash"], input="pässword\n", capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    encoded = proc.stdout.strip()
    assert check_format(encoded) and verify_password("pässword", encoded)
    assert "pässword" not in proc.stdout + proc.stderr
    argument = subprocess.run([RECORDGATE, "hash", "x y"], capture_output=True, text=True)
    assert verify_password("x y", argument.stdout.strip())


def test_an_empty_password_is_refused() -> None:
    proc = subprocess.run([RECORDGATE, "hash"], input="\n", capture_output=True, text=True)
    assert proc.returncode == 2 and "empty" in proc.stderr and proc.stdout == ""
