"""Find connector classes by name (entry-point group ``recordgate.connectors``) or by spec.

A spec is either a registered name (``sql``) or ``module.path:ClassName``, so a third-party
connector works without being installed as a distribution.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, cast

from connectors.base import Connector
from gateway.exceptions import ConfigError, ConnectorNotFound

__all__ = ["ENTRY_POINT_GROUP", "create_connector", "known_connectors", "load_connector_class"]

ENTRY_POINT_GROUP = "recordgate.connectors"


def known_connectors() -> list[str]:
    """Names registered in the entry-point group, sorted."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_connector_class(spec: str) -> type[Connector]:
    """The connector class named by ``spec`` (a registered name or ``module:Class``).

    Raises ``ConnectorNotFound`` naming the known connectors if nothing matches.
    """
    spec = spec.strip()
    if ":" in spec:
        return _load_object(spec)
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
    if not matches:
        known = ", ".join(known_connectors()) or "none"
        raise ConnectorNotFound(
            f"no storage connector named {spec!r}; known: {known} (or give 'module.path:ClassName')"
        )
    return _load_object(matches[0].value)


def create_connector(spec: str, url: str, **options: Any) -> Connector:
    """A new, unopened connector: ``load_connector_class(spec)(url, **options)``.

    A constructor refusing its options (an unknown one: ``TypeError``; a bad value:
    ``ValueError``) is a ``ConfigError`` naming the connector.
    """
    cls = load_connector_class(spec)
    try:
        return cls(url, **options)  # type: ignore[call-arg]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"storage connector {spec!r}: {exc}") from exc


def _load_object(target: str) -> type[Connector]:
    module_name, _, attr_path = target.partition(":")
    if not module_name or not attr_path:
        raise ConnectorNotFound(f"bad connector spec {target!r}; expected 'module.path:ClassName'")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConnectorNotFound(f"cannot import connector module {module_name!r}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConnectorNotFound(f"module {module_name!r} has no {attr_path!r}") from exc
    if not isinstance(obj, type):
        raise ConnectorNotFound(f"{target!r} is not a class")
    return cast("type[Connector]", obj)
