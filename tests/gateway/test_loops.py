"""``server.event_loop``: which loop ``recordgate start`` runs on, and what it says about it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from gateway.config import config_from_dict
from gateway.exceptions import ConfigError
from gateway.loops import loop_factory
from tests.event_loop import pinned
from tests.gateway.test_cli_startup import RECORDGATE
from tests.gateway.test_cli_startup import _startup_log as harness_startup_log


def _startup_log(config, cwd, *args: str) -> str:
    """``recordgate start``'s log up to "listening on" (then SIGTERM), on the loop its config and
    ``args`` choose: never the suite's pinned one (``tests/event_loop.py``)."""
    proc = subprocess.Popen(
        [RECORDGATE, "start", "-c", str(config), "--port", "0", "--host", "127.0.0.1", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert "listening on ws://127.0.0.1:" in line, err
    return err


def test_asyncio_is_the_standard_loop() -> None:
    assert loop_factory("asyncio") == ("asyncio", None)


def test_auto_and_uvloop_run_on_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop", reason="the uvloop extra is not installed")
    for choice in ("auto", "uvloop"):
        name, factory = loop_factory(choice)
        assert name == "uvloop" and factory is not None
        loop = factory()
        try:
            assert isinstance(loop, uvloop.Loop)
        finally:
            loop.close()


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert loop_factory("auto") == ("asyncio", None)
    with pytest.raises(ConfigError, match=r"pip install 'recordgate\[uvloop\]'"):
        loop_factory("uvloop")


def test_an_unknown_loop_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"server\.event_loop must be auto, asyncio or uvloop"):
        config_from_dict({"server": {"event_loop": "trio"}})


def test_the_standard_loop_is_the_default() -> None:
    assert config_from_dict({}).server.event_loop == "asyncio"


@pytest.mark.parametrize("choice", [None, "asyncio", "auto"])
def test_recordgate_start_serves_on_the_chosen_loop_and_says_so(
    tmp_path, choice: str | None
) -> None:
    config = tmp_path / "rg.yaml"
    chosen = "" if choice is None else f"\nserver: {{event_loop: {choice}}}"
    config.write_text(f"storage: {{type: memory}}{chosen}\n")
    try:
        import uvloop  # noqa: F401

        expected = "uvloop" if choice == "auto" else "asyncio"
    except ImportError:
        expected = "asyncio"
    err = _startup_log(config, tmp_path)  # waits for "listening on", then stops it
    assert f"event loop: {expected}" in err


async def test_the_in_process_tests_run_on_the_loop_ci_asks_for() -> None:
    loop = asyncio.get_running_loop()
    if pinned() == "uvloop":
        assert type(loop).__module__.startswith("uvloop")
    else:
        assert isinstance(loop, asyncio.BaseEventLoop)


def test_the_event_loop_flag_overrides_the_config(tmp_path) -> None:
    # What the suite's harnesses use to pin every `recordgate start` to one loop.
    config = tmp_path / "rg.yaml"
    config.write_text("storage: {type: memory}\nserver: {event_loop: uvloop}\n")
    assert "event loop: asyncio" in _startup_log(config, tmp_path, "--event-loop", "asyncio")


def test_the_suites_server_processes_run_on_the_pinned_loop(tmp_path) -> None:
    # RECORDGATE_TEST_EVENT_LOOP, as .ci/run sets it, reaches the processes the harnesses start.
    config = tmp_path / "rg.yaml"
    config.write_text("storage: {type: memory}\n")
    expected = pinned() or loop_factory(config_from_dict({}).server.event_loop)[0]
    assert f"event loop: {expected}" in harness_startup_log(config, tmp_path)
