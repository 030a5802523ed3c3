"""The Elasticsearch **stand-in** of the tests: osmem-server behind a header-rewriting proxy.

No genuine Elasticsearch can be installed on these machines. osmem-server (PyPI
``osmem-server``, an in-memory OpenSearch-compatible server shipped as a binary in the wheel)
speaks the REST API the connector uses; ``es_header_proxy`` makes the official client accept it
(media types and the product header, nothing else). Both run as subprocesses on free loopback
ports and exit with the process that started them.

``require_elasticsearch()`` gives the URL the connector should use: ``RECORDGATE_ELASTICSEARCH_URL``
if set (a genuine cluster), else the stand-in, started once per process. Without osmem-server it
skips, or fails under ``RECORDGATE_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import servers_required

__all__ = ["ElasticsearchStandIn", "require_elasticsearch", "standin_binary"]

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0


def standin_binary() -> str | None:
    """The osmem-server binary shipped in the ``osmem-server`` wheel, if installed."""
    try:
        from osmem_server import resolve_binary
    except ImportError:
        return None
    try:
        return resolve_binary()
    except Exception:
        return None


def _first_line(process: subprocess.Popen[bytes], what: str) -> str:
    """The first line ``process`` prints, within ``STARTUP_TIMEOUT``."""
    assert process.stdout is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.daemon = True
    reader.start()
    reader.join(STARTUP_TIMEOUT)
    if not lines or not lines[0]:
        process.kill()
        raise RuntimeError(f"{what} did not start (exit code {process.poll()})")
    return lines[0].decode().strip()


@dataclass
class ElasticsearchStandIn:
    """osmem-server and the header proxy in front of it; ``url`` is the proxy's."""

    binary: str
    url: str = ""
    server_url: str = ""
    """osmem-server itself, without the proxy (the official client refuses to talk to it)."""
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> ElasticsearchStandIn:
        exit_with_us = ["-no-stdin-watch", "-parent-pid", str(os.getpid())]
        server = subprocess.Popen(
            # No Japanese analysis: records do not need it, and loading it slows the first index.
            [self.binary, "-addr", "127.0.0.1:0", "-no-ja", *exit_with_us],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._processes.append(server)
        self.server_url = json.loads(_first_line(server, "osmem-server"))["url"]
        proxy = subprocess.Popen(
            [sys.executable, "-m", "tests.standins.es_header_proxy", self.server_url],
            cwd=REPO,
            stdin=subprocess.PIPE,  # the proxy exits when this closes, i.e. when we die
            stdout=subprocess.PIPE,
        )
        self._processes.append(proxy)
        port = _first_line(proxy, "the stand-in's header proxy").rsplit(" ", 1)[1]
        self.url = f"http://127.0.0.1:{port}"
        self._warm_up()
        return self

    def _warm_up(self) -> None:
        """Create and delete an index: the first one costs the stand-in about a second, which
        would otherwise land in the first test's timeout."""
        index = f"{self.server_url}/rg-standin-warm-up"
        for method in ("PUT", "DELETE"):
            request = urllib.request.Request(index, method=method)
            with urllib.request.urlopen(request, timeout=STARTUP_TIMEOUT):
                pass

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                process.kill()
                process.wait()
        self._processes.clear()


_shared: ElasticsearchStandIn | None = None
_lock = threading.Lock()


def require_elasticsearch() -> str:
    """The URL of an Elasticsearch for tests: ``RECORDGATE_ELASTICSEARCH_URL``, or the stand-in
    (started on first use, stopped at exit). Skips without osmem-server; fails under CI."""
    global _shared
    external = os.environ.get("RECORDGATE_ELASTICSEARCH_URL")
    if external:
        return external
    with _lock:
        if _shared is None:
            binary = standin_binary()
            if binary is None:
                message = (
                    "the Elasticsearch stand-in (PyPI osmem-server, installed by the test extra) "
                    "is not installed"
                )
                if servers_required():
                    pytest.fail(f"{message} (RECORDGATE_REQUIRE_SERVERS=1)")
                pytest.skip(message)
            standin = ElasticsearchStandIn(binary)
            try:
                standin.start()
            except RuntimeError as exc:
                standin.stop()
                if servers_required():
                    pytest.fail(f"{exc} (RECORDGATE_REQUIRE_SERVERS=1)")
                pytest.skip(str(exc))
            atexit.register(standin.stop)
            _shared = standin
        return _shared.url
