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
from typing import Any

import yaml

from .exceptions import ConfigError

__all__ = [
    "Config",
    "ListenConfig",
    "RpcConfig",
    "ServerConfig",
    "StorageConfig",
    "config_from_dict",
    "load_config",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 6020
    path: str = "/deepstream"
    health_path: str = "/health-check"
    max_message_size: int = 1_048_576
    """Bytes; a larger frame gets PARSER MAXIMUM_MESSAGE_SIZE_EXCEEDED."""
    heartbeat_interval: float = 30.0
    """Seconds; a socket with no inbound message for twice this long is dropped."""
    unauthenticated_timeout: float = 180.0
    max_auth_attempts: int = 3
    max_send_buffer: int = 16 * 1_048_576
    """Bytes queued for one slow client before it is disconnected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcConfig:
    ack_timeout: float = 1.0
    response_timeout: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenConfig:
    response_timeout: float = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    type: str = "memory"
    url: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
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
    if isinstance(hint, type) and (not isinstance(value, hint) or isinstance(value, bool) != (hint is bool)):
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
