"""The real ``recordgate`` console script, run in a subprocess."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.event_loop import start_args
from tests.wire import WireClient

RECORDGATE = str(Path(sys.executable).with_name("recordgate"))
MEMORY = "storage:\n  type: memory\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a new server could listen there (as servers do, despite TIME_WAIT leftovers)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def run(*args: str, cwd: Path) -> asyncio.subprocess.Process:
    loop = start_args() if args[:1] == ("start",) else []
    return await asyncio.create_subprocess_exec(
        RECORDGATE,
        *args,
        *loop,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def listening_port(proc: asyncio.subprocess.Process) -> int:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    found = re.fullmatch(rb"recordgate listening on ws://([\d.]+):(\d+)/deepstream\n", line)
    assert found, line
    return int(found.group(2))


async def health(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health-check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status = int((await reader.readline()).split()[1])
    writer.close()
    await writer.wait_closed()
    return status


@pytest.fixture
async def config_dir(tmp_path: Path) -> AsyncIterator[Path]:
    (tmp_path / "memory.yaml").write_text(MEMORY)
    yield tmp_path


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> tuple[int, bytes]:
    proc.send_signal(sig)
    _, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode is not None
    return proc.returncode, stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_start_serve_and_stop_cleanly(config_dir: Path, sig: int) -> None:
    proc = await run(
        "start", "-c", "memory.yaml", "--host", "127.0.0.1", "--port", "0", cwd=config_dir
    )
    port = await listening_port(proc)
    assert await health(port) == 200
    assert not port_is_free(port)
    peer = await WireClient.connect(f"ws://127.0.0.1:{port}/deepstream", login={})
    code, stderr = await stop(proc, sig)
    assert code == 0, stderr
    assert b"Traceback" not in stderr
    async with asyncio.timeout(5):
        await peer.ws.wait_closed()
    assert port_is_free(port)


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="no dual-stack sockets here")
async def test_host_unspecified_ipv6_serves_both_families_and_prints_a_url(
    config_dir: Path,
) -> None:
    """``--host ::``: a real process serves 127.0.0.1 and ::1 (gateway/bind.py) and prints a
    URL a client can use (``ws://[::]:PORT``, not ``ws://:::PORT``)."""
    proc = await run("start", "-c", "memory.yaml", "--host", "::", "--port", "0", cwd=config_dir)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    found = re.fullmatch(rb"recordgate listening on ws://\[::\]:(\d+)/deepstream\n", line)
    assert found, line
    port = int(found.group(1))
    assert await health(port) == 200
    reader, writer = await asyncio.open_connection("::1", port)
    writer.write(b"GET /health-check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await reader.readline()).split()[1] == b"200"
    writer.close()
    await writer.wait_closed()
    code, _ = await stop(proc)
    assert code == 0


async def test_command_line_overrides_the_config_file(config_dir: Path) -> None:
    port = free_port()
    (config_dir / "c.yaml").write_text(MEMORY + "server:\n  host: 0.0.0.0\n  port: 1\n")
    proc = await run(
        "start", "-c", "c.yaml", "--host", "127.0.0.1", "--port", str(port), cwd=config_dir
    )
    assert await listening_port(proc) == port
    assert await health(port) == 200
    assert (await stop(proc))[0] == 0


async def test_the_config_file_is_used(config_dir: Path) -> None:
    port = free_port()
    (config_dir / "c.yaml").write_text(MEMORY + f"server:\n  host: 127.0.0.1\n  port: {port}\n")
    proc = await run("start", "-c", "c.yaml", "--log-level", "WARNING", cwd=config_dir)
    assert await listening_port(proc) == port
    assert (await stop(proc))[0] == 0


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("server:\n  prot: 6020\n", "server: unknown key(s) prot"),
        ("servers: {}\n", "config: unknown key(s) servers"),
        ("server:\n  port: 'high'\n", "server.port: expected int, got 'high'"),
        ("server:\n  heartbeat_interval: true\n", "server.heartbeat_interval"),
        ("server:\n  port: 70000\n", "server.port must be between 0 and 65535"),
        ("server: [1, 2]\n", "server: expected a mapping"),
        ("server: {port: [\n", "invalid YAML"),
        ("storage: {type: nosuch}\n", "no storage connector named 'nosuch'"),
        ("storage: {type: sql, tabel: x}\n", "unexpected keyword argument 'tabel'"),
        ("storage: {type: sql, timeout: soon}\n", "option 'timeout' must be a number"),
        ("storage: {type: sql, synchronous: fsync}\n", "option 'synchronous' must be one of"),
        ("write_behind: {conflict_policy: mine}\n", "write_behind.conflict_policy must be"),
    ],
    ids=[
        "unknown key",
        "unknown section",
        "wrong type",
        "bool",
        "range",
        "not a map",
        "yaml",
        "unknown connector",
        "unknown connector option",
        "bad connector option",
        "bad sqlite synchronous",
        "bad conflict policy",
    ],
)
async def test_a_bad_config_file_exits_2_naming_the_key(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    (tmp_path / "bad.yaml").write_text(yaml_text)
    proc = await run("start", "-c", "bad.yaml", cwd=tmp_path)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 2
    assert stdout == b""
    assert stderr.decode().startswith("recordgate: ")
    assert message in stderr.decode()
    assert "Traceback" not in stderr.decode()


async def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    proc = await run("start", "-c", "absent.yaml", cwd=tmp_path)
    _, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 2
    assert b"cannot read config file absent.yaml" in stderr


async def test_a_taken_port_exits_1(config_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await run(
            "start", "-c", "memory.yaml", "--host", "127.0.0.1", "--port", str(port), cwd=config_dir
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 1
    assert b"address already in use" in stderr.lower()
    assert b"Traceback" not in stderr


@pytest.mark.parametrize("args", [["start", "--port", "x"], ["stop"], []])
async def test_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    proc = await run(*args, cwd=tmp_path)
    _, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 2
    assert b"usage: recordgate" in stderr


@pytest.mark.parametrize(
    ("driver", "url", "extra"),
    [
        ("asyncpg", "postgresql+asyncpg://postgres@127.0.0.1:5432/test", "postgresql"),
        ("asyncmy", "mysql+asyncmy://root@127.0.0.1:3306/test", "mariadb"),
    ],
)
async def test_a_missing_driver_is_one_line_naming_the_extra(
    tmp_path: Path, driver: str, url: str, extra: str
) -> None:
    # The driver is installed here (the test extra needs it), so this process is made unable to
    # import it, exactly as `import` behaves when it is not installed (ModuleNotFoundError).
    (tmp_path / "sql.yaml").write_text(f"storage:\n  type: sql\n  url: {url}\n")
    code = (
        f"import sys; sys.modules[{driver!r}] = None\n"
        "from gateway.cli import main\n"
        "sys.exit(main(['start', '-c', 'sql.yaml', '--host', '127.0.0.1', '--port', '0']))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, stderr.decode()
    assert stdout == b""
    lines = stderr.decode().splitlines()
    assert lines == [
        f"recordgate: storage URL {url.partition(':')[0]}:// needs the Python package "
        f"'{driver}', which is not installed: pip install 'recordgate[{extra}]'"
    ]
