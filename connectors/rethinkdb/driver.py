"""The ``rethinkdb`` driver, imported on first use, set to the asyncio loop type."""

from __future__ import annotations

import functools
from typing import Any

from connectors._common import import_driver

__all__ = ["reql"]


@functools.cache
def reql() -> Any:
    """The driver's ``r`` (a ``RethinkDB()`` instance using asyncio); ``DriverMissing`` (a
    ``ConfigError``) naming the extra to install if the driver is absent."""
    driver = import_driver("rethinkdb", "rethinkdb")
    r = driver.RethinkDB()
    r.set_loop_type("asyncio")
    return r
