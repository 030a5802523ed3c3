"""The in-process reference connector: ``memory://NAME`` stores live as long as the process."""

from __future__ import annotations

from connectors.memory.connector import MemoryConnector, MemoryRawReader

__all__ = ["MemoryConnector", "MemoryRawReader"]
