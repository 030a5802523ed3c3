"""Plain SQL a data team runs on the stored layout (default table ``records``).

Kept verbatim in one place: the README shows these strings and ``tests/connectors/test_sql.py``
runs exactly them against a real database.
"""

from __future__ import annotations

__all__ = ["DATA_TEAM_QUERIES"]

DATA_TEAM_QUERIES: dict[str, str] = {
    "postgresql": (
        "SELECT name FROM records WHERE collection = 'user' AND (data->>'age')::int > 30 "
        "ORDER BY name"
    ),
    # MariaDB; MySQL 8.0.21+ has JSON_VALUE too. It yields text, compared numerically with 30.
    "mariadb": (
        "SELECT name FROM records WHERE collection = 'user' AND JSON_VALUE(data, '$.age') > 30 "
        "ORDER BY name"
    ),
    "sqlite": (
        "SELECT name FROM records WHERE collection = 'user' AND json_extract(data, '$.age') > 30 "
        "ORDER BY name"
    ),
}
