"""Merge strategies: what a record becomes when the server reports VERSION_EXISTS.

A strategy is called as ``strategy(local_data, local_version, remote_data, remote_version)`` and
returns the data the record should hold. Returning the remote data adopts the server's state;
anything else is written back at ``remote_version + 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["LOCAL_WINS", "REMOTE_WINS", "MergeStrategy"]

MergeStrategy = Callable[[Any, int, Any, int], Any]


def REMOTE_WINS(local: Any, local_version: int, remote: Any, remote_version: int) -> Any:
    """Keep the server's data; the local write is dropped."""
    return remote


def LOCAL_WINS(local: Any, local_version: int, remote: Any, remote_version: int) -> Any:
    """Keep the local data; it is resent on top of the server's version."""
    return local
