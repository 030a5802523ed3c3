"""The query a data team runs on the stored layout (default database ``recordgate``,
collection ``records``), kept verbatim in one place: the README shows it, in mongosh syntax,
and ``tests/connectors/mongodb/test_queries.py`` runs exactly it through PyMongo."""

from __future__ import annotations

__all__ = ["DATA_TEAM_QUERY", "DATA_TEAM_QUERY_MONGOSH"]

DATA_TEAM_QUERY: dict[str, object] = {"collection": "user", "data.age": {"$gt": 30}}
"""Users older than 30, as PyMongo's ``find`` filter (sorted by ``_id``, the record name)."""

DATA_TEAM_QUERY_MONGOSH = (
    'db.records.find({"collection": "user", "data.age": {"$gt": 30}}).sort({"_id": 1})'
)
"""The same query in mongosh, as the README prints it."""
