"""The asyncio Python client for recordgate (and any deepstream V4+ server).

See :class:`Client`. Errors are raised as :class:`gateway.exceptions.ClientError` subclasses.
"""

from .client import Client
from .connection import ConnectionState
from .merge import LOCAL_WINS, REMOTE_WINS, MergeStrategy
from .record import Record

__all__ = ["LOCAL_WINS", "REMOTE_WINS", "Client", "ConnectionState", "MergeStrategy", "Record"]
