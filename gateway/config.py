"""Configuration: typed, frozen, keyword-only sections built from YAML (or defaults).

The only module besides ``cli`` that reads files. Unknown keys and wrong types are errors that
name the offending key, so a typo in the YAML never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .exceptions import ConfigError
from .protocol.payload import DEFAULT_MAX_DEPTH, MAX_DEPTH_CEILING

__all__ = [
    "CONFLICT_POLICIES",
    "CacheConfig",
    "Config",
    "ListenConfig",
    "RpcConfig",
    "ServerConfig",
    "StorageConfig",
    "WriteBehindConfig",
    "config_from_dict",
    "load_config",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 6020
    path: str = "/deepstream"
    health_path: str = "/health-check"
    metrics_path: str = "/metrics"
    """Prometheus text format: connections and the store's write-behind counters."""
    max_message_size: int = 1_048_576
    """Bytes; a larger frame gets PARSER MAXIMUM_MESSAGE_SIZE_EXCEEDED, one over twice this
    size closes the socket (1009)."""
    heartbeat_interval: float = 30.0
    """Seconds; a socket with no inbound message for twice this long is dropped."""
    unauthenticated_timeout: float = 180.0
    """Seconds a client may take to log in successfully."""
    max_auth_attempts: int = 3
    max_send_buffer: int = 16 * 1_048_576
    """Bytes queued for one slow client before it is disconnected."""
    max_json_depth: int = DEFAULT_MAX_DEPTH
    """Containers nested in any JSON a client sends (record data, counted from the record's
    root so a PATCH counts its path; AUTH data). Deeper gets INVALID_MESSAGE_DATA."""

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "server.port must be between 0 and 65535")
        for key in ("path", "health_path", "metrics_path"):
            _require(getattr(self, key).startswith("/"), f"server.{key} must start with /")
        for key in ("max_message_size", "max_auth_attempts", "max_send_buffer"):
            _require(getattr(self, key) >= 1, f"server.{key} must be at least 1")
        for key in ("heartbeat_interval", "unauthenticated_timeout"):
            _require(getattr(self, key) > 0, f"server.{key} must be positive")
        _require(
            1 <= self.max_json_depth <= MAX_DEPTH_CEILING,
            f"server.max_json_depth must be between 1 and {MAX_DEPTH_CEILING}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcConfig:
    ack_timeout: float = 1.0
    response_timeout: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenConfig:
    response_timeout: float = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    """``storage: {type: NAME, url: URL, ...options}``: the connector that keeps records.

    Keys other than ``type``, ``url`` and ``data_dir`` are the connector's own options
    (``table``, ``timeout``, ...) and are collected into ``options``. The embedded default is
    SQLite: type ``sql`` with no ``url`` stores ``records.db`` in ``data_dir`` (created if
    missing). Type ``memory`` keeps records in the process only.
    """

    type: str = "sql"
    url: str = ""
    data_dir: str = "recordgate-data"
    """Directory of the embedded SQLite file; used only when ``url`` is empty."""
    options: dict[str, Any] = field(default_factory=dict)

    extra_keys_into: ClassVar[str] = "options"


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    max_records: int = 100_000
    """Records held in memory. Only clean records are evicted (least recently used first);
    dirty ones stay until flushed, so the cache may exceed this by up to the pending records."""

    def __post_init__(self) -> None:
        _require(self.max_records >= 1, "cache.max_records must be at least 1")


CONFLICT_POLICIES = ("storage-wins", "gateway-wins", "merge")


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteBehindConfig:
    """The write-behind flusher: what operators can set and rely on (see ``gateway.store``)."""

    interval: float = 1.0
    """Seconds between flush rounds; each round writes everything pending. A record changed
    many times within an interval is written once (with ``coalesce``)."""
    batch_size: int = 500
    """Operations per storage call (one transaction each); a round is as many as it needs."""
    coalesce: bool = True
    """Write only the newest snapshot of a record; off: every version is written in order."""
    max_pending: int = 100_000
    """Writes not yet in storage. At half of it a round starts without waiting for the
    interval; at the cap, new writes are refused (back-pressure) until storage catches up."""
    retry_initial: float = 0.1
    """Seconds before the first retry while storage is unavailable; doubles per failure."""
    retry_max: float = 10.0
    """Ceiling in seconds of the retry delay."""
    conflict_policy: str = "storage-wins"
    """``storage-wins``, ``gateway-wins`` or ``merge``: when storage holds a newer snapshot."""
    shutdown_timeout: float = 30.0
    """Seconds a graceful shutdown spends flushing what is pending before giving up."""

    def __post_init__(self) -> None:
        _require(self.interval > 0, "write_behind.interval must be positive")
        _require(self.batch_size >= 1, "write_behind.batch_size must be at least 1")
        _require(self.max_pending >= 1, "write_behind.max_pending must be at least 1")
        _require(self.retry_initial > 0, "write_behind.retry_initial must be positive")
        _require(
            self.retry_max >= self.retry_initial,
            "write_behind.retry_max must be at least retry_initial",
        )
        _require(self.shutdown_timeout >= 0, "write_behind.shutdown_timeout must be >= 0")
        _require(
            self.conflict_policy in CONFLICT_POLICIES,
            f"write_behind.conflict_policy must be one of {', '.join(CONFLICT_POLICIES)}",
        )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    write_behind: WriteBehindConfig = field(default_factory=WriteBehindConfig)


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    extra = getattr(cls, "extra_keys_into", None)
    if extra is not None:  # a section whose unknown keys are options (storage)
        collected = {k: v for k, v in raw.items() if k not in names}
        raw = {k: v for k, v in raw.items() if k in names}
        if collected:
            given = raw.get(extra) or {}
            raw[extra] = {**given, **collected} if isinstance(given, dict) else given
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {', '.join(map(str, unknown))}")
    values = {}
    for key, value in raw.items():
        values[key] = _coerce(hints[key], value, f"{where}.{key}" if where else key)
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)  # type: ignore[arg-type]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(options[0], value, where)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping")
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return list(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Any:
        return value
    if isinstance(hint, type) and (
        not isinstance(value, hint) or isinstance(value, bool) != (hint is bool)
    ):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def config_from_dict(raw: dict[str, Any]) -> Config:
    result: Config = _build(Config, raw, "")
    return result


def load_config(path: str | Path | None) -> Config:
    """Read a YAML config file; ``None`` gives the embedded defaults."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    return config_from_dict(raw or {})
