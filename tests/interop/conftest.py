"""Interop fixtures: the official deepstream JS client (from npm) against a real ``recordgate``.

``run_scenario(name, *args)`` runs ``scenarios/<name>.js`` with node against one session-wide
``recordgate start`` subprocess and returns the JSON it printed. The npm dependencies
(``package-lock.json``) are installed on first use. Without node/npm the tests skip, except under
CI or ``RECORDGATE_REQUIRE_SERVERS=1``, where they fail: CI must never pass with interop skipped.
``RECORDGATE_INTEROP_URL=host:port/path`` runs the scenarios against a server already running
(e.g. the reference deepstream server) instead of starting recordgate.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.event_loop import start_args
from tests.servers import servers_required

HERE = Path(__file__).parent
LOCK = HERE / "package-lock.json"
INSTALLED_LOCK = HERE / "node_modules" / ".recordgate-installed-lock.json"
SCENARIO_TIMEOUT = 60.0

# Small server-side timeouts keep the timeout scenarios fast.
SERVER_CONFIG = """\
rpc:
  ack_timeout: 0.5
  response_timeout: 1.0
listen:
  response_timeout: 0.5
"""

Scenario = Callable[..., dict[str, Any]]


def interop_required() -> bool:
    ci = os.environ.get("CI", "").strip().lower()
    return servers_required() or ci not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    if interop_required():
        pytest.fail(
            f"interop cannot run: {reason} (required under CI / RECORDGATE_REQUIRE_SERVERS)"
        )
    pytest.skip(f"interop: {reason}")


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with the locked npm dependencies installed in tests/interop."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("node and npm are needed to run the official deepstream JS client")
    lock = LOCK.read_bytes()
    if not INSTALLED_LOCK.is_file() or INSTALLED_LOCK.read_bytes() != lock:
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=HERE,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            unavailable("npm ci timed out")
        if done.returncode != 0:
            unavailable(f"npm ci failed:\n{done.stdout}\n{done.stderr}")
        INSTALLED_LOCK.write_bytes(lock)
    return node


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"recordgate exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health-check", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"recordgate did not become healthy on port {port}:\n{log.read_text()}")


class RecordgateProcess:
    """``recordgate start`` as a real subprocess, in its own working directory."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or _free_port()
        self.log = workdir / "recordgate.log"
        self.config = workdir / "recordgate.yaml"
        self.config.write_text(SERVER_CONFIG)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}/deepstream"

    def start(self) -> None:
        command = [sys.executable, "-m", "gateway.cli", "start", "-c", str(self.config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "WARNING"]
        command += start_args()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        _wait_healthy(self.port, self.process, self.log)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def interop_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path | None]]:
    """``host:port/path`` of the server under test and its log (a fresh recordgate by default)."""
    external = os.environ.get("RECORDGATE_INTEROP_URL")
    if external:
        yield external, None
        return
    server = RecordgateProcess(tmp_path_factory.mktemp("recordgate"))
    server.start()
    try:
        yield server.url, server.log
    finally:
        server.stop()


def scenario_runner(node: str, url: str, server_log: Path | None = None) -> Scenario:
    def run(name: str, *args: object) -> dict[str, Any]:
        script = HERE / "scenarios" / f"{name}.js"
        command = [node, str(script), url, *map(str, args)]
        done = subprocess.run(
            command, cwd=HERE, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT
        )
        if done.returncode != 0:
            log = f"\n--- server log ---\n{server_log.read_text()}" if server_log else ""
            output = f"{done.stdout}\n{done.stderr}{log}"
            pytest.fail(f"scenario {name} failed ({done.returncode}):\n{output}", pytrace=False)
        lines = done.stdout.strip().splitlines()
        try:
            result: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            pytest.fail(f"scenario {name} printed no JSON:\n{done.stdout}\n{done.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def run_scenario(node: str, interop_target: tuple[str, Path | None]) -> Scenario:
    return scenario_runner(node, *interop_target)
