"""Storage connectors: the contract (:mod:`connectors.base`) and a name registry.

Importing this package imports no database driver; each connector imports its driver lazily.
"""

from __future__ import annotations

from connectors.registry import (
    ENTRY_POINT_GROUP,
    create_connector,
    known_connectors,
    load_connector_class,
)

__all__ = ["ENTRY_POINT_GROUP", "create_connector", "known_connectors", "load_connector_class"]
