"""``server.event_loop``: which loop ``recordgate start`` runs on, and what it says about it.

The default, ``auto``, is checked on real processes: one with uvloop installed (a dependency
on CPython outside Windows) and one that cannot import it, as where it is not installed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import config_from_dict
from gateway.exceptions import ConfigError
from gateway.loops import loop_factory
from tests.conftest import ServerFactory
from tests.event_loop import pinned
from tests.gateway.test_cli_startup import RECORDGATE
from tests.gateway.test_cli_startup import _startup_log as harness_startup_log
from tests.gateway.test_server import http_get

UVLOOP_IS_A_DEPENDENCY = sys.platform != "win32" and sys.implementation.name == "cpython"
"""pyproject.toml's markers for the uvloop dependency."""

MEMORY = "storage: {type: memory}\n"


def loops_in(metrics: str) -> dict[str, float]:
    """``recordgate_event_loop_info``'s samples by their ``loop`` label (official parser)."""
    return {
        sample.labels["loop"]: sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "recordgate_event_loop_info"
        for sample in family.samples
    }


def without_uvloop(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python processes cannot import uvloop, as where it is not installed:
    a ``uvloop`` package ahead of site-packages that raises what a missing module raises."""
    package = tmp_path / "hide-uvloop" / "uvloop"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'uvloop'\", name='uvloop')\n"
    )
    path = [str(package.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def serve(
    tmp_path: Path, config: str, *args: str, env: dict[str, str] | None = None
) -> tuple[str, dict[str, float]]:
    """Run ``recordgate start`` on the loop ``config`` and ``args`` choose (never the suite's
    pinned one, ``tests/event_loop.py``) until it serves, then SIGTERM: its log, and the loops
    its ``/metrics`` names."""
    path = tmp_path / "rg.yaml"
    path.write_text(config)
    proc = subprocess.Popen(
        [RECORDGATE, "start", "-c", str(path), "--port", "0", "--host", "127.0.0.1", *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    metrics = ""
    try:
        line = proc.stdout.readline()  # "recordgate listening on ws://127.0.0.1:PORT/deepstream"
        if "listening on" in line:
            port = line.rsplit(":", 1)[1].split("/", 1)[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as got:
                metrics = got.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "listening on" in line, err
    assert proc.returncode == 0, err
    return err, loops_in(metrics)


def test_auto_is_the_default() -> None:
    assert config_from_dict({}).server.event_loop == "auto"


def test_by_default_recordgate_start_runs_on_uvloop_where_it_is_a_dependency(
    tmp_path: Path,
) -> None:
    if not UVLOOP_IS_A_DEPENDENCY:
        pytest.skip("uvloop is not a dependency on this platform")
    log, loops = serve(tmp_path, MEMORY)
    assert "event loop: uvloop (server.event_loop: auto)" in log
    assert loops == {"uvloop": 1}


def test_by_default_recordgate_start_runs_on_the_standard_loop_without_uvloop(
    tmp_path: Path,
) -> None:
    log, loops = serve(tmp_path, MEMORY, env=without_uvloop(tmp_path))
    assert "event loop: asyncio (server.event_loop: auto)" in log
    assert loops == {"asyncio": 1}


def test_without_uvloop_event_loop_uvloop_refuses_to_start_naming_the_extra(
    tmp_path: Path,
) -> None:
    (tmp_path / "rg.yaml").write_text(MEMORY + "server: {event_loop: uvloop}\n")
    done = subprocess.run(
        [RECORDGATE, "start", "-c", "rg.yaml", "--port", "0", "--host", "127.0.0.1"],
        cwd=tmp_path, env=without_uvloop(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.splitlines() == [
        "recordgate: server.event_loop is uvloop but uvloop is not installed: "
        "pip install 'recordgate[uvloop]'"
    ]


@pytest.mark.parametrize(
    ("config", "args"),
    [
        (MEMORY + "server: {event_loop: asyncio}\n", ()),
        (MEMORY + "server: {event_loop: uvloop}\n", ("--event-loop", "asyncio")),
    ],
    ids=["config", "flag-over-config"],
)
def test_the_standard_loop_when_asked_for(tmp_path: Path, config: str, args: tuple[str]) -> None:
    log, loops = serve(tmp_path, config, *args)
    assert "event loop: asyncio (server.event_loop: asyncio)" in log
    assert loops == {"asyncio": 1}


def test_event_loop_uvloop_runs_on_uvloop(tmp_path: Path) -> None:
    pytest.importorskip("uvloop", reason="uvloop is not installed")
    log, loops = serve(tmp_path, MEMORY, "--event-loop", "uvloop")
    assert "event loop: uvloop (server.event_loop: uvloop)" in log
    assert loops == {"uvloop": 1}


def test_asyncio_is_the_standard_loop() -> None:
    assert loop_factory("asyncio") == ("asyncio", None)


def test_auto_and_uvloop_run_on_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")
    for choice in ("auto", "uvloop"):
        name, factory = loop_factory(choice)
        assert name == "uvloop" and factory is not None
        loop = factory()
        try:
            assert isinstance(loop, uvloop.Loop)
        finally:
            loop.close()


def test_an_unknown_loop_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"server\.event_loop must be auto, asyncio or uvloop"):
        config_from_dict({"server": {"event_loop": "trio"}})


def test_the_suites_server_processes_run_on_the_pinned_loop(tmp_path: Path) -> None:
    # RECORDGATE_TEST_EVENT_LOOP, as .ci/run sets it, reaches the processes the harnesses start.
    config = tmp_path / "rg.yaml"
    config.write_text(MEMORY)
    expected = pinned() or loop_factory(config_from_dict({}).server.event_loop)[0]
    assert f"event loop: {expected} " in harness_startup_log(config, tmp_path)


async def test_the_in_process_tests_run_on_the_loop_ci_asks_for_and_metrics_name_it(
    make_server: ServerFactory,
) -> None:
    loop = asyncio.get_running_loop()
    if pinned() == "uvloop":
        assert type(loop).__module__.startswith("uvloop")
    else:
        assert isinstance(loop, asyncio.BaseEventLoop)
    server = await make_server()
    status, body = await http_get(server.port, "/metrics")
    assert status == 200
    assert loops_in(body.decode()) == {"uvloop" if pinned() == "uvloop" else "asyncio": 1}
