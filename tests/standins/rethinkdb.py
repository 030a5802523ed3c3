"""The RethinkDB protocol stand-in for tests: npm ``reqlite`` 2.3.0, a JavaScript imitation of
RethinkDB 2.0. It is **not** RethinkDB; docs/connectors.md lists where it differs.

``reqlite_url()`` starts one stand-in per test session on a free loopback port (installing the
locked npm package in ``tests/standins/reqlite`` on first use, as ``tests/interop`` does) and
returns ``rethinkdb://127.0.0.1:PORT/recordgate``. Without node/npm, or if the stand-in does not
start, tests skip, except under ``RECORDGATE_REQUIRE_SERVERS=1``, where they fail.
"""

from __future__ import annotations

import atexit
import functools
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import NoReturn

import pytest

from tests.servers import servers_required

__all__ = ["STANDIN", "reqlite_url", "start_reqlite", "stop"]

HERE = Path(__file__).parent / "reqlite"
LOCK = HERE / "package-lock.json"
INSTALLED_LOCK = HERE / "node_modules" / ".recordgate-installed-lock.json"
STANDIN = "reqlite 2.3.0 (a RethinkDB stand-in, not RethinkDB)"
_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


def _unavailable(reason: str) -> NoReturn:
    message = f"RethinkDB stand-in {STANDIN}: {reason}"
    if servers_required():
        pytest.fail(f"{message} (RECORDGATE_REQUIRE_SERVERS=1)")
    pytest.skip(f"{message}; set RECORDGATE_REQUIRE_SERVERS=1 to make this a failure")


def _install(npm: str) -> None:
    lock = LOCK.read_bytes()
    if INSTALLED_LOCK.is_file() and INSTALLED_LOCK.read_bytes() == lock:
        return
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        _unavailable("npm ci timed out")
    if done.returncode != 0:
        _unavailable(f"npm ci failed:\n{done.stdout}\n{done.stderr}")
    INSTALLED_LOCK.write_bytes(lock)


def start_reqlite(node: str, port: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    """A stand-in process on 127.0.0.1 (``port`` 0: a free one) and its port.

    It exits when its stdin closes, so it cannot outlive the process that started it.
    """
    process = subprocess.Popen(
        [node, str(HERE / "serve.js"), str(port)],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(20)
    match = _LISTENING.search(line[0]) if line else None
    if match is None:
        process.kill()
        process.wait()
        raise RuntimeError(f"reqlite did not start: {line!r}")
    return process, int(match.group(1))


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


@functools.cache
def _session_standin() -> int:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed to run it")
    _install(npm)
    try:
        process, port = start_reqlite(node)
    except RuntimeError as exc:
        _unavailable(str(exc))
    atexit.register(stop, process)
    return port


def reqlite_url(database: str = "recordgate") -> str:
    """The URL of this session's stand-in (started on first call)."""
    return f"rethinkdb://127.0.0.1:{_session_standin()}/{database}"
