"""The operator commands, as the command line runs them; each returns the exit code.

Exit codes as ``recordgate start``: 0 success, 2 a bad command line or configuration, 1 the
command ran but could not do everything (storage unreachable, records that failed to copy).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from connectors.base import (
    CAPABILITY_RAW,
    Connector,
    Snapshot,
    StorageTimeout,
    StorageUnavailable,
    SupportsRawReader,
)

from ..bind import authority
from ..config import Config, load_config
from ..exceptions import ConfigError
from .copy import CopySummary, copy_records
from .jsonl import read_snapshots, write_snapshots
from .progress import Progress

__all__ = ["StorageSpec", "check", "export", "import_file", "mask_url", "migrate"]

log = logging.getLogger("recordgate")


@dataclass(frozen=True, slots=True)
class StorageSpec:
    """A connector to open: from ``--from/--to NAME --*-url URL --*-option K=V`` or a config."""

    type: str
    url: str
    options: dict[str, Any]

    @classmethod
    def from_args(cls, kind: str, url: str | None, options: Sequence[str]) -> StorageSpec:
        parsed: dict[str, Any] = {}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or not key:
                raise ConfigError(f"connector option {option!r} is not KEY=VALUE")
            parsed[key] = value
        return cls(kind, url or "", parsed)

    @classmethod
    def from_config(cls, config: Config) -> StorageSpec:
        from ..store import storage_url

        storage = config.storage
        if storage.type == "memory" and not storage.url:
            raise ConfigError("storage type memory keeps nothing outside the server process")
        return cls(storage.type, storage_url(storage), dict(storage.options))

    def create(self) -> Connector:
        from connectors.registry import create_connector

        return create_connector(self.type, self.url, **self.options)

    def describe(self) -> str:
        return f"{self.type} {mask_url(self.url)}"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; an SQLite file as an absolute path."""
    if url.startswith("sqlite") and ":///" in url:
        scheme, _, path = url.partition(":///")
        return f"{scheme}:///{Path(path).resolve()}" if path else url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    # From the text of the netloc, not .hostname/.port: a MongoDB URL lists several hosts
    # (``mongodb://u:p@h1:1,h2:2/db``), which have no single port.
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


async def _count(connector: Connector, prefix: str) -> int | None:
    if CAPABILITY_RAW not in connector.capabilities or not isinstance(connector, SupportsRawReader):
        return None
    reader = connector.raw_reader()
    try:
        return await reader.count_raw(prefix)
    finally:
        await reader.close()


@contextlib.asynccontextmanager
async def _opened(spec: StorageSpec, role: str) -> AsyncIterator[Connector]:
    connector = spec.create()
    try:
        await connector.open()
    except Exception as exc:
        raise _Unavailable(f"{role} storage {spec.describe()}: {exc}") from exc
    try:
        yield connector
    except (StorageUnavailable, StorageTimeout) as exc:
        raise _Unavailable(f"{role} storage failed midway: {exc}; run again to go on") from exc
    finally:
        await connector.close()


class _Unavailable(Exception):
    """A storage could not be opened, or failed midway (what was written stays written)."""


def _report(summary: CopySummary, out: IO[str]) -> int:
    for line in summary.lines():
        print(line, file=out)
    return 0 if summary.failed == 0 else 1


async def migrate(source: StorageSpec, target: StorageSpec, *, prefix: str, batch_size: int) -> int:
    try:
        async with _opened(source, "source") as src, _opened(target, "target") as dst:
            log.info("migrating %s -> %s", source.describe(), target.describe())
            progress = Progress("migrate", await _count(src, prefix))
            summary = await copy_records(
                src.scan(prefix),
                dst,
                batch_size=batch_size,
                on_batch=lambda s: progress.update(s.done),
            )
            progress.finish()
    except _Unavailable as exc:
        print(f"recordgate migrate: {exc}", file=sys.stderr)
        return 1
    return _report(summary, sys.stdout)


async def export(source: StorageSpec, *, prefix: str, output: str | None) -> int:
    try:
        async with _opened(source, "source") as src:
            with _output(output) as out:
                count = await write_snapshots(src.scan(prefix), out)
    except _Unavailable as exc:
        print(f"recordgate export: {exc}", file=sys.stderr)
        return 1
    print(f"exported {count} records", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8") as out:
        yield out


async def import_file(lines: IO[str], target: StorageSpec, *, batch_size: int) -> int:
    """Import an export file already opened by the caller (it closes it)."""
    bad: list[str] = []

    def on_bad_line(number: int, reason: str) -> None:
        bad.append(f"  line {number}: {reason}")

    try:
        async with _opened(target, "target") as dst:
            progress = Progress("import", None)
            summary = await copy_records(
                _aiter(read_snapshots(lines, on_bad_line)),
                dst,
                batch_size=batch_size,
                on_batch=lambda s: progress.update(s.done),
            )
            progress.finish()
    except _Unavailable as exc:
        print(f"recordgate import: {exc}", file=sys.stderr)
        return 1
    code = _report(summary, sys.stdout)
    if bad:
        print(f"bad lines: {len(bad)}", file=sys.stdout)
        for line in bad[:100]:
            print(line, file=sys.stdout)
        return 1
    return code


async def _aiter(items: Iterable[Snapshot]) -> AsyncIterator[Snapshot]:
    for item in items:
        yield item


async def check(config_path: Path) -> int:
    """``config_path`` absolute (resolved by the caller, off the event loop)."""
    try:
        config = load_config(config_path)
        spec = StorageSpec.from_config(config)
        permissions = _permissions(config)
        auth = await _auth(config)
    except ConfigError as exc:
        print(f"recordgate check: {exc}", file=sys.stderr)
        return 2
    print(f"config: {config_path}")
    print(f"listen: {authority(config.server.host, config.server.port)}{config.server.path}")
    print(f"auth: {auth}")
    if permissions:
        print(f"permissions: {permissions}")
    try:
        async with _opened(spec, "the") as connector:
            count = await _count(connector, "")
            if count is None:
                count = 0
                async for _ in connector.scan(""):
                    count += 1
    except _Unavailable as exc:
        print(f"recordgate check: {exc}", file=sys.stderr)
        return 1
    print(f"storage: {spec.describe()}")
    print(f"records: {count}")
    print("ok")
    return 0


async def _auth(config: Config) -> str:
    """The configured strategies, each built as the server builds it (users and key files are
    read, so a broken one fails the check)."""
    from ..auth import create_authenticator

    chain = create_authenticator(config.auth)
    await chain.close()
    if not config.auth:
        return "open (no auth configured: anyone can log in)"
    return ", ".join(str(entry.get("type")) for entry in config.auth)


def _permissions(config: Config) -> str:
    path = getattr(config, "permissions", "")
    if not path:
        return ""
    from ..permissions import Permissions

    Permissions.load(path)
    return path
