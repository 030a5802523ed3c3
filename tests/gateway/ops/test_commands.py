"""``recordgate migrate | export | import | check`` as operators run them: the real console
script, real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Put
from connectors.sql import SQLConnector
from tests.servers import require_postgres

RECORDGATE = str(Path(sys.executable).parent / "recordgate")


def _run(
    *args: str, input: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RECORDGATE, *args], input=input, capture_output=True, text=True, timeout=timeout
    )


def _data(i: int, size: int = 0) -> dict[str, Any]:
    return {"i": i, "name": f"ü-{i}", "tags": [i, str(i)], "pad": "x" * size}


def _seed(path: Path, count: int, *, size: int = 0, start: int = 0) -> None:
    async def seed() -> None:
        async with SQLConnector(f"sqlite+aiosqlite:///{path}") as connector:
            for first in range(start, start + count, 5000):
                last = min(first + 5000, start + count)
                await connector.write(
                    [Put(f"doc/{i:07}", 1 + i % 5, _data(i, size)) for i in range(first, last)]
                )

    asyncio.run(seed())


def _rows(path: Path) -> dict[str, tuple[int, Any]]:
    with closing(sqlite3.connect(path)) as db:
        return {
            name: (version, json.loads(data))
            for name, version, data in db.execute("SELECT name, version, data FROM records")
        }


def _count(path: Path) -> int:
    try:
        with closing(sqlite3.connect(path, timeout=5)) as db:
            return int(db.execute("SELECT count(*) FROM records").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _summary(output: str) -> dict[str, int]:
    keys = ("copied", "already up to date", "newer in target", "failed")
    found = {}
    for line in output.splitlines():
        key, _, value = line.partition(": ")
        if key in keys:
            found[key] = int(value)
    return found


def _sqlite(path: Path) -> list[str]:
    return ["--to", "sql", "--to-url", f"sqlite+aiosqlite:///{path}"]


@pytest.fixture
def pg_table() -> Iterator[tuple[str, str]]:
    url = require_postgres()
    table = f"rg_migrate_{uuid.uuid4().hex[:10]}"
    yield url, table

    async def drop() -> None:
        async with SQLConnector(url, table=table) as connector:
            await connector.drop()

    asyncio.run(drop())


def _peak_rss_kib(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the command line in a process of its own that reports its own peak RSS."""
    code = (
        "import resource, sys\n"
        "from gateway.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600
    )
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK ")]
    assert peak, proc.stderr[-3000:]
    return proc, int(peak[-1].split()[1])


@pytest.mark.timeout(900)  # about a minute on an idle machine; far more on a loaded one
def test_migrate_100k_sqlite_to_postgresql_and_back_twice_with_flat_memory(
    tmp_path: Path, pg_table: tuple[str, str]
) -> None:
    url, table = pg_table
    source = tmp_path / "source.db"
    _seed(source, 100_000, size=400)  # about 45 MB of records: more than the copy may hold
    sqlite_from = ["--from", "sql", "--from-url", f"sqlite+aiosqlite:///{source}"]
    to_pg = ["--to", "sql", "--to-url", url, "--to-option", f"table={table}"]

    first, peak_100k = _peak_rss_kib("migrate", *sqlite_from, *to_pg)
    assert first.returncode == 0, first.stderr[-3000:]
    assert _summary(first.stdout) == {
        "copied": 100_000, "already up to date": 0, "newer in target": 0, "failed": 0,
    }  # fmt: skip
    again = _run("migrate", *sqlite_from, *to_pg)
    assert again.returncode == 0 and _summary(again.stdout)["already up to date"] == 100_000
    assert _summary(again.stdout)["copied"] == 0

    back = tmp_path / "back.db"
    pg_from = ["--from", "sql", "--from-url", url, "--from-option", f"table={table}"]
    home = _run("migrate", *pg_from, *_sqlite(back))
    assert home.returncode == 0 and _summary(home.stdout)["copied"] == 100_000
    assert _rows(back) == _rows(source)
    assert _summary(_run("migrate", *pg_from, *_sqlite(back)).stdout)["copied"] == 0

    # Flat memory: a tenth of the records costs about as much as all of them.
    small, peak_10k = _peak_rss_kib(
        "migrate", *sqlite_from, "--prefix", "doc/000", *_sqlite(tmp_path / "small.db")
    )
    assert small.returncode == 0 and _summary(small.stdout)["copied"] == 10_000
    assert peak_100k - peak_10k < 25 * 1024, (peak_10k, peak_100k)


def test_an_interrupted_migrate_is_resumed_by_running_it_again(tmp_path: Path) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    _seed(source, 30_000)
    args = ["migrate", "--from", "sql", "--from-url", f"sqlite+aiosqlite:///{source}",
            *_sqlite(target), "--batch-size", "50"]  # fmt: skip
    proc = subprocess.Popen([RECORDGATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _count(target) < 2000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _count(target)
    assert 0 < partial < 30_000, partial
    rerun = _run(*args)
    assert rerun.returncode == 0, rerun.stderr
    summary = _summary(rerun.stdout)
    assert summary["copied"] + summary["already up to date"] == 30_000
    assert summary["already up to date"] >= partial - 50  # a batch in flight may be redone
    assert _rows(target) == _rows(source)


def test_export_import_round_trip_and_bad_lines(tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    _seed(source, 500)
    awkward = {'name "quoted" / ü 😀', "a/b/c/d", "x" * 300}

    async def add() -> None:
        async with SQLConnector(f"sqlite+aiosqlite:///{source}") as connector:
            await connector.write(
                [
                    Put(name, 7, {"big": 2**60, "f": 0.1, "list": [[], {}], "e": ""})
                    for name in awkward
                ]
                + [Put("array", 1, [1, "two", None])]  # type: ignore[list-item]
            )

    asyncio.run(add())
    from_source = ["--from", "sql", "--from-url", f"sqlite+aiosqlite:///{source}"]
    exported = tmp_path / "export.jsonl"
    result = _run("export", *from_source, "-o", str(exported))
    assert result.returncode == 0 and "exported 504 records" in result.stderr
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 504
    assert json.loads(lines[0]).keys() == {"name", "version", "data"}
    stdout = _run("export", *from_source, "--prefix", "doc/000049")
    names = [json.loads(line)["name"] for line in stdout.stdout.splitlines()]
    assert names == [f"doc/000049{i}" for i in range(10)]

    target = tmp_path / "target.db"
    imported = _run("import", str(exported), *_sqlite(target))
    assert imported.returncode == 0, imported.stderr
    assert _summary(imported.stdout)["copied"] == 504
    assert _rows(target) == _rows(source)
    assert _summary(_run("import", str(exported), *_sqlite(target)).stdout)["copied"] == 0

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"name": "ok", "version": 1, "data": {}}\n'
        "not json\n"
        '{"name": "v", "version": -1, "data": {}}\n'
        '{"name": "d", "version": 1, "data": 5}\n'
        '{"name": "n", "version": 1, "data": {"x": NaN}}\n'
        "[1]\n"
    )
    result = _run("import", str(bad), *_sqlite(tmp_path / "t2.db"))
    assert result.returncode == 1
    assert _summary(result.stdout)["copied"] == 1
    for number in (2, 3, 4, 5, 6):
        assert f"line {number}:" in result.stdout
    missing = _run("import", str(tmp_path / "nope.jsonl"), *_sqlite(target))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_a_diverged_record_fails_the_run_and_is_named(tmp_path: Path) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    _seed(source, 10)
    _seed(target, 1, start=3)  # same name and version as the source's...
    with closing(sqlite3.connect(target)) as db, db:
        db.execute("UPDATE records SET data = '{\"changed\": true}'")  # ...different data
    result = _run("migrate", "--from", "sql", "--from-url", f"sqlite+aiosqlite:///{source}",
                  *_sqlite(target))  # fmt: skip
    assert result.returncode == 1
    assert _summary(result.stdout) == {
        "copied": 9, "already up to date": 0, "newer in target": 0, "failed": 1,
    }  # fmt: skip
    assert "failed 'doc/0000003'" in result.stdout


def test_command_line_mistakes_are_usage_errors(tmp_path: Path) -> None:
    both = _run("migrate", "-c", "x.yml", "--from", "sql", "--to", "sql")
    assert both.returncode == 2 and "-c CONFIG or as --from" in both.stderr
    unknown = _run("migrate", "--from", "nosuch", "--from-url", "x", "--to", "sql")
    assert unknown.returncode == 2 and "no storage connector named 'nosuch'" in unknown.stderr
    option = _run("export", "--from", "sql", "--from-url", "sqlite+aiosqlite:///x.db",
                  "--from-option", "oops")  # fmt: skip
    assert option.returncode == 2 and "KEY=VALUE" in option.stderr


def test_check_reports_a_good_config_and_refuses_bad_ones(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "good.yaml"
    config.write_text(f"storage: {{type: sql, data_dir: {data}}}\nserver: {{port: 7000}}\n")
    _seed_dir = data / "records.db"
    data.mkdir()
    _seed(_seed_dir, 12)
    good = _run("check", "-c", str(config))
    assert good.returncode == 0, good.stderr
    assert f"config: {config}" in good.stdout
    assert f"storage: sql sqlite+aiosqlite:///{_seed_dir}" in good.stdout
    assert "records: 12" in good.stdout and "listen: 0.0.0.0:7000/deepstream" in good.stdout
    ipv6 = tmp_path / "ipv6.yaml"  # an IPv6 host in brackets, as `recordgate start` prints it
    ipv6.write_text(
        f"storage: {{type: sql, data_dir: {data}}}\nserver: {{host: '::', port: 7000}}\n"
    )
    listed = _run("check", "-c", str(ipv6))
    assert listed.returncode == 0 and "listen: [::]:7000/deepstream" in listed.stdout, listed

    users = tmp_path / "users.yml"
    users.write_text("ada: {password: plain-text}\n")
    auth = tmp_path / "auth.yaml"
    auth.write_text(
        f"storage: {{type: sql, data_dir: {data}}}\nauth: [{{type: file, users: users.yml}}]\n"
    )
    result = _run("check", "-c", str(auth))
    assert (
        result.returncode == 2
        and "users.yml" in result.stderr
        and "recordgate hash" in result.stderr
    )
    assert "auth: open" in good.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {prot: 1}\n")
    result = _run("check", "-c", str(bad))
    assert result.returncode == 2 and "prot" in result.stderr

    down = tmp_path / "down.yaml"
    down.write_text(
        "storage: {type: sql, url: 'postgresql+asyncpg://ada:s3cret@127.0.0.1:1/x', timeout: 2}\n"
    )
    result = _run("check", "-c", str(down), timeout=60)
    assert result.returncode == 1
    assert "s3cret" not in result.stdout + result.stderr
    assert "ada:***@127.0.0.1:1" in result.stderr


def test_progress_is_a_bar_on_a_terminal(tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    _seed(source, 3000)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            RECORDGATE,
            "migrate",
            "--from",
            "sql",
            "--from-url",
            f"sqlite+aiosqlite:///{source}",
            *_sqlite(tmp_path / "t.db"),
            "--batch-size",
            "100",
        ],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=60)
    os.close(leader)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0
    assert "migrate: [" in text and "3000/3000 records" in text and "\r" in text


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+asyncpg://ada:s3cret@h:5432/db", "postgresql+asyncpg://ada:***@h:5432/db"),
        ("postgresql+asyncpg://ada@h/db", "postgresql+asyncpg://ada@h/db"),
        ("mongodb://ada:s3cret@h1:1,h2:2/db?replicaSet=rs", "mongodb://ada:***@h1:1,h2:2/db?replicaSet=rs"),
        ("mongodb+srv://ada:p%40ss@c.example.net/db", "mongodb+srv://ada:***@c.example.net/db"),
        ("mongodb://ada:s3cret@[::1]:27017/db", "mongodb://ada:***@[::1]:27017/db"),
        ("mongodb://h1,h2/db", "mongodb://h1,h2/db"),
    ],
)  # fmt: skip
def test_mask_url_hides_passwords_whatever_the_hosts(url: str, masked: str) -> None:
    from gateway.ops.commands import mask_url

    assert mask_url(url) == masked
