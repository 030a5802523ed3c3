"""A deliberately broken connector: every put overwrites, whatever version is stored.

The suite must fail on it (``test_teeth.py``); a suite that passes it checks nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from connectors.base import Delete, Outcome, Put, WriteResult
from connectors.memory import MemoryConnector


class OverwritingConnector(MemoryConnector):
    name: ClassVar[str] = "overwriting"

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        results = []
        for op in ops:
            if isinstance(op, Put):
                # Last writer wins: drop whatever is stored, then store this snapshot.
                await super().write([Delete(op.name, 2**62), op])
                results.append(WriteResult(op, Outcome.APPLIED))
            else:
                results.extend(await super().write([op]))
        return results
