"""Elasticsearch connector (the official ``elasticsearch`` client's ``AsyncElasticsearch``, for
Elasticsearch 8.x and 9.x): records as documents of one index with an explicit mapping.

Importing this package imports no driver; the connector's ``open()`` does.
"""

from __future__ import annotations

from connectors.elasticsearch.connector import ElasticsearchConnector
from connectors.elasticsearch.queries import DATA_TEAM_QUERY

__all__ = ["DATA_TEAM_QUERY", "ElasticsearchConnector"]
