"""MongoDB connector: records as documents of one collection, through PyMongo's native async API
(``pymongo.AsyncMongoClient``; Motor, its predecessor, reached end of life in May 2026).

Importing this package imports neither PyMongo nor BSON; creating a connector does
(``pip install 'recordgate[mongodb]'``; without it, ``DriverMissing`` names the extra).
"""

from __future__ import annotations

from connectors.mongodb.connector import MongoConnector
from connectors.mongodb.queries import DATA_TEAM_QUERY, DATA_TEAM_QUERY_MONGOSH

__all__ = ["DATA_TEAM_QUERY", "DATA_TEAM_QUERY_MONGOSH", "MongoConnector"]
