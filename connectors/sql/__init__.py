"""SQL connector (SQLAlchemy 2 async): SQLite via aiosqlite, PostgreSQL via asyncpg, MariaDB and
MySQL via asyncmy.

Importing this package imports neither SQLAlchemy nor a driver; ``open()`` does.
"""

from __future__ import annotations

from connectors.sql.connector import SQLConnector
from connectors.sql.queries import DATA_TEAM_QUERIES

__all__ = ["DATA_TEAM_QUERIES", "SQLConnector"]
