"""Shared by the benchmark scripts: storage configurations and a ``recordgate start`` process."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import statistics
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The scripts run from a checkout: make ``tests.wire`` (the raw peer) importable beside gateway.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+asyncmy://root@127.0.0.1:3306/test"
RECORDGATE = str(Path(sys.executable).parent / "recordgate")


@dataclass(frozen=True)
class Backend:
    """A storage for one benchmark run: its ``storage:`` section (``None``: in memory)."""

    label: str
    url: str | None
    table: str

    def section(self) -> dict[str, Any]:
        if self.url is None:
            return {"type": "memory"}
        return {"type": "sql", "url": self.url, "table": self.table}

    async def drop(self) -> None:
        if self.url is None:
            return
        from connectors.sql import SQLConnector

        async with SQLConnector(self.url, table=self.table) as conn:
            await conn.drop()


def backends(workdir: Path, postgres_url: str | None, mariadb_url: str | None) -> list[Backend]:
    """In-memory, an SQLite file in ``workdir``, and PostgreSQL and MariaDB unless their URL is
    None."""
    table = f"bench_{uuid.uuid4().hex[:10]}"
    found = [
        Backend("memory", None, table),
        Backend("sqlite", f"sqlite+aiosqlite:///{workdir / 'bench.db'}", table),
    ]
    if postgres_url:
        found.append(Backend("postgresql", postgres_url, table))
    if mariadb_url:
        found.append(Backend("mariadb", mariadb_url, table))
    return found


@dataclass(frozen=True)
class Running:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time of the server process so far, user and system, to the nanosecond: the sum
        of its threads' ``/proc/<pid>/task/<tid>/schedstat`` run times. ``/proc/<pid>/stat``
        counts in 10 ms clock ticks charged to whoever runs when a tick lands, which for a
        server that wakes thousands of times a second for tens of microseconds each is a
        sample, not a measurement. A thread that exits between two readings takes its time
        with it (the servers measured keep theirs). Without schedstat: the ticks."""
        if not Path(f"/proc/{self.pid}/schedstat").exists():
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        total = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # the thread exited meanwhile
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9


@contextlib.asynccontextmanager
async def recordgate(
    config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    """Run ``recordgate start -c CONFIG`` on a free port until the block ends (SIGTERM);
    ``env`` is added to the environment (``PYTHONPATH`` of another tree, to compare)."""
    path = workdir / f"cfg-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(config))
    process = await asyncio.create_subprocess_exec(
        RECORDGATE,
        "start",
        "-c",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-level",
        "WARNING",
        cwd=workdir,
        env={**os.environ, **env} if env else None,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if b"listening on" not in line:
            raise RuntimeError(f"recordgate did not start: {line!r}")
        yield Running(line.decode().rsplit(" ", 1)[1].strip(), process.pid)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 60)


def on_loops(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``config`` on each event loop to compare, named: the standard loop (``server.event_loop:
    asyncio``), and where uvloop is installed ``config`` as it is, on the default (``auto``),
    which is uvloop there (``tests/gateway/test_loops.py``)."""
    standard = {**config, "server": {**config.get("server", {}), "event_loop": "asyncio"}}
    loops = [("asyncio", standard)]
    if importlib.util.find_spec("uvloop"):
        loops.append(("uvloop", config))
    return loops


def workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="recordgate-bench-")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], digits: int = 0) -> str:
    """``median [lowest-highest]``."""
    return f"{median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"
