"""RethinkDB storage connector (``rethinkdb://host:28015/db``); the driver is imported lazily."""

from __future__ import annotations

from connectors.rethinkdb.connector import RethinkDBConnector

__all__ = ["RethinkDBConnector"]
