"""Shared fixtures: a real recordgate server on a free port, and raw WebSocket peers."""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any

import pytest

from gateway.config import Config, config_from_dict
from gateway.server import Server
from tests.event_loop import pinned as pinned_loop
from tests.servers import servers_required
from tests.standins.mongodb import mongodb_standin  # noqa: F401 - a session fixture
from tests.wire import WireClient

ServerFactory = Callable[..., Awaitable[Server]]


if pinned_loop() == "uvloop":
    # CI runs the connection layer's modules again on uvloop, the loop `recordgate start`
    # runs on by default; otherwise the standard loop (see tests/event_loop.py). Through
    # pytest-asyncio's loop-factory hook (1.4+; overriding ``event_loop_policy`` is deprecated):
    # one factory, so each async test runs once, on it, under its usual id. Defined only when
    # asked for, so the default run keeps pytest-asyncio's own loop.

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
        import uvloop  # required when asked for: a missing uvloop fails, never skips

        return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Start servers with config overrides: ``await make_server({'rpc': {...}})``."""
    started: list[Server] = []

    async def make(overrides: dict[str, Any] | None = None, **kwargs: Any) -> Server:
        # In-memory storage unless a test asks for more: the embedded default is an SQLite
        # file in the working directory, which tests must not share.
        raw: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": 0},
            "storage": {"type": "memory"},
        }
        for section, values in (overrides or {}).items():
            if isinstance(values, dict):
                raw.setdefault(section, {}).update(values)
            else:  # auth: a list; permissions: a path
                raw[section] = values
        server = Server(config_from_dict(raw), **kwargs)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.close()


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    return await make_server()


def url_of(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}{server.config.server.path}"


@pytest.fixture
def url(server: Server) -> str:
    return url_of(server)


@pytest.fixture
async def connect(url: str) -> AsyncIterator[Callable[..., Awaitable[WireClient]]]:
    """``await connect()`` gives a logged-in raw peer; ``connect(login=None)`` a bare socket."""
    clients: list[WireClient] = []

    async def make(login: dict[str, Any] | None = {}, to: str | None = None) -> WireClient:  # noqa: B006
        client = await WireClient.connect(to or url, login=login)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


__all__ = ["Config", "ServerFactory", "url_of"]


def pytest_configure(config: pytest.Config) -> None:
    """``RECORDGATE_FUZZ_SEED=random``: one seed drawn here, before pytest-xdist starts its
    workers (they inherit the environment), so every worker fuzzes with the seed printed."""
    if os.environ.get("RECORDGATE_FUZZ_SEED") == "random":
        os.environ["RECORDGATE_FUZZ_SEED"] = str(random.SystemRandom().randrange(2**32))


_fuzz_frames: Counter[str] = Counter()
_fuzz_seeds: set[int | None] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Frames the fuzz tests fed (``tests/fuzz/conftest.py``), from whichever process ran them."""
    for key, value in report.user_properties:
        if key == "fuzz_frames":
            frames, seed = value
            _fuzz_frames.update(frames)
            _fuzz_seeds.add(seed)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _fuzz_frames:
        return
    layers = ", ".join(f"{layer} {n:,}" for layer, n in sorted(_fuzz_frames.items()))
    total = sum(_fuzz_frames.values())
    seeds = ", ".join(
        "derandomized" if seed is None else f"RECORDGATE_FUZZ_SEED={seed}"
        for seed in sorted(_fuzz_seeds, key=lambda seed: -1 if seed is None else seed)
    )
    terminalreporter.write_line(f"fuzz frames: {layers}; total {total:,} ({seeds})")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under ``RECORDGATE_REQUIRE_SERVERS=1`` (CI) a skipped interop or server test fails.

    Other skips (e.g. a connector lacking an optional capability) stay skips.
    """
    report = yield
    if not report.skipped or hasattr(report, "wasxfail") or not servers_required():
        return report
    if item.get_closest_marker("interop") or item.get_closest_marker("needs_server"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but RECORDGATE_REQUIRE_SERVERS=1 forbids it: {reason}"
    return report
