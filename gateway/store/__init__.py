"""The record store the record handler talks to: a cache in front of storage.

``base`` states the interface; ``memory`` is the store with no storage behind it.
"""

from __future__ import annotations

from ..config import Config
from .base import Record, RecordStore
from .memory import MemoryStore

__all__ = ["MemoryStore", "Record", "RecordStore", "create_store"]


def create_store(config: Config) -> RecordStore:
    """The store the configuration asks for."""
    return MemoryStore()
