"""The queries the RethinkDB connector sends, for tests that count its round trips."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.rethinkdb.session import Session


def recorded_queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that gets the ``what`` (the label) of every query any session runs from now on,
    in order; clear it between the writes counted. Undone with ``monkeypatch``."""
    queries: list[str] = []
    run = Session.run

    async def counted(self: Session, query: Any, what: str, **optargs: Any) -> Any:
        queries.append(what)
        return await run(self, query, what, **optargs)

    monkeypatch.setattr(Session, "run", counted)
    return queries
