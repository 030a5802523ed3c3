"""The export format: JSON Lines, one ``{"name", "version", "data"}`` object per line.

Written with the same compact encoder as storage (non-ASCII kept as UTF-8). Reading checks each
line and reports bad ones with their line number instead of stopping; a line is bad when it is
not a JSON object with a string ``name``, an integer ``version >= 0`` and object or array
``data``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Callable, Iterator
from typing import IO

from connectors._common import dump_json
from connectors.base import Snapshot, StorageRejected

__all__ = ["read_snapshots", "write_snapshots"]


async def write_snapshots(snapshots: AsyncIterable[Snapshot], out: IO[str]) -> int:
    """Write each snapshot as a line; returns how many were written."""
    count = 0
    async for snapshot in snapshots:
        name = json.dumps(snapshot.name, ensure_ascii=False)
        out.write(f'{{"name":{name},"version":{snapshot.version},"data":')
        out.write(dump_json(snapshot.data))
        out.write("}\n")
        count += 1
    return count


def read_snapshots(lines: IO[str], on_bad_line: Callable[[int, str], None]) -> Iterator[Snapshot]:
    """The snapshots of an export file; ``on_bad_line(number, reason)`` for each bad line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            on_bad_line(number, f"not JSON: {exc}")
            continue
        if not isinstance(item, dict):
            on_bad_line(number, "not a JSON object")
            continue
        name, version, data = item.get("name"), item.get("version"), item.get("data")
        if not isinstance(name, str) or not name:
            on_bad_line(number, "name must be a non-empty string")
        elif type(version) is not int or version < 0:
            on_bad_line(number, "version must be an integer >= 0")
        elif not isinstance(data, dict | list):
            on_bad_line(number, "data must be a JSON object or array")
        else:
            try:
                dump_json(data)  # NaN, Infinity: refused here, not by the target
            except StorageRejected as exc:
                on_bad_line(number, str(exc))
                continue
            yield Snapshot(name, version, data)
