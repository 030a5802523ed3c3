"""The MongoDB **stand-in** of these tests: NX-27017 (PyPI ``nx-27017``), a MongoDB wire-protocol
server on SQLite. No genuine MongoDB can be installed on these machines; tests against the
stand-in show that the connector speaks the protocol and keeps the contract as far as the
stand-in implements MongoDB. Its gaps are listed in ``docs/connectors.md`` (MongoDB section).

``mongodb_standin`` (session fixture) is one stand-in on a free loopback port, in memory;
``MongoStandin`` starts more, e.g. file-backed ones to kill and restart. Without ``nx-27017``
installed (it comes with the ``test`` extra) the fixture skips, and fails under
``RECORDGATE_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import servers_required

__all__ = ["MongoStandin", "mongodb_standin", "standin_executable"]

STANDIN = "nx-27017"


def standin_executable() -> str | None:
    """The ``nx-27017`` command of this Python environment (or the PATH), if installed."""
    beside = Path(sys.executable).parent / STANDIN
    return str(beside) if beside.exists() else shutil.which(STANDIN)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the test process dies, so no stand-in outlives a run."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class MongoStandin:
    """One NX-27017 process on 127.0.0.1. ``path=None``: in memory (lost when it stops); else
    an SQLite file that survives ``kill()`` and ``start()`` again on the same port."""

    def __init__(self, workdir: Path, *, path: Path | None = None, port: int | None = None):
        self.workdir = workdir
        self.path = path
        self.port = port or _free_port()
        self.log = workdir / f"nx-27017-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "") -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30) -> MongoStandin:
        executable = standin_executable()
        if executable is None:
            raise RuntimeError(f"{STANDIN} is not installed (pip install -e '.[test]')")
        db = "memory" if self.path is None else str(self.path)
        pid_file = self.log.with_suffix(".pid")
        command = [executable, "--db", db, "--host", "127.0.0.1", "-p", str(self.port),
                   "--log-file", str(self.log), "--pid-file", str(pid_file)]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{STANDIN} exited with {self.process.returncode}:\n{self.tail()}"
                )
            if self._answers():
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{STANDIN} did not answer on port {self.port}:\n{self.tail()}")

    def _answers(self) -> bool:
        """True once it answers a ``hello`` (accepting connections is not enough)."""
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient[dict[str, object]] = MongoClient(
            self.url(), serverSelectionTimeoutMS=500, connectTimeoutMS=500
        )
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the stand-in gets no chance to flush or close anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def require_standin() -> str:
    """The stand-in's executable; skip without it (fail under RECORDGATE_REQUIRE_SERVERS=1)."""
    executable = standin_executable()
    if executable is None:
        message = f"the MongoDB stand-in {STANDIN} is not installed (pip install -e '.[test]')"
        if servers_required():
            pytest.fail(f"{message}; RECORDGATE_REQUIRE_SERVERS=1")
        pytest.skip(message)
    return executable


@pytest.fixture(scope="session")
def mongodb_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoStandin]:
    """One in-memory MongoDB stand-in for the session (tests use their own collections)."""
    require_standin()
    standin = MongoStandin(tmp_path_factory.mktemp("mongodb-standin")).start()
    yield standin
    standin.kill()
