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
from .loops import EVENT_LOOPS
from .protocol.payload import DEFAULT_MAX_DEPTH, MAX_DEPTH_CEILING
from .tls import TlsConfig

__all__ = [
    "CONFLICT_POLICIES",
    "CacheConfig",
    "ClusterConfig",
    "Config",
    "HttpConfig",
    "LimitsConfig",
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
    """The address to listen on: ``0.0.0.0`` every IPv4 interface, ``::`` every interface, IPv4
    and IPv6 (one dual-stack socket where the OS has them), any other address only itself."""
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
    """Bytes queued for one client (replies being produced included) before it is closed
    (1008); checked as each reply is queued, so no single request can queue more."""
    max_send_buffer_total: int = 256 * 1_048_576
    """Bytes queued for all clients together; past it the clients holding the most are
    dropped first until the total is back under."""
    max_receive_queue: int = 4 * 1_048_576
    """Bytes of one client's messages that may wait behind a slow one before reading from
    it pauses (TCP back-pressure; nothing is refused)."""
    max_connections: int = 10_000
    """Open TCP connections; lowered at start to stay below the process's file-descriptor
    limit. Past it a new client gets HTTP 503 before its WebSocket opens."""
    max_connections_per_ip: int = 1_000
    """Open TCP connections from one remote address; past it HTTP 503."""
    tls: TlsConfig | None = None
    """``{cert, key}`` (PEM files) to serve ``wss://`` and ``https://`` on this port."""
    max_messages_per_second: float = 10_000.0
    """Messages one client may send per second on average (a token bucket); past it the client
    gets CONNECTION ERROR and is closed (1008). 0: no limit. The default stays out of the way
    of a client writing as fast as one connection can (benchmarks, bulk loads)."""
    message_burst: int = 20_000
    """Messages one client may send at once above that rate (the bucket's size)."""
    max_json_depth: int = DEFAULT_MAX_DEPTH
    """Containers nested in any JSON a client sends (record data, counted from the record's
    root so a PATCH counts its path; AUTH data). Deeper gets INVALID_MESSAGE_DATA."""
    event_loop: str = "auto"
    """``auto``: uvloop when installed (a dependency on CPython outside Windows; elsewhere the
    ``uvloop`` extra), else the standard loop; ``asyncio``: the standard loop; ``uvloop``: uvloop
    or refuse to start (see ``gateway/loops.py``)."""

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "server.port must be between 0 and 65535")
        _require(
            self.event_loop in EVENT_LOOPS,
            "server.event_loop must be auto, asyncio or uvloop",
        )
        for key in ("path", "health_path", "metrics_path"):
            _require(getattr(self, key).startswith("/"), f"server.{key} must start with /")
        for key in (
            "max_message_size",
            "max_auth_attempts",
            "max_send_buffer",
            "max_send_buffer_total",
            "max_receive_queue",
            "max_connections",
            "max_connections_per_ip",
        ):
            _require(getattr(self, key) >= 1, f"server.{key} must be at least 1")
        _require(self.max_messages_per_second >= 0, "server.max_messages_per_second must be >= 0")
        _require(
            self.message_burst >= 1 or self.max_messages_per_second == 0,
            "server.message_burst must be at least 1",
        )
        for key in ("heartbeat_interval", "unauthenticated_timeout"):
            _require(getattr(self, key) > 0, f"server.{key} must be positive")
        _require(
            1 <= self.max_json_depth <= MAX_DEPTH_CEILING,
            f"server.max_json_depth must be between 1 and {MAX_DEPTH_CEILING}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    """What one message may ask of the server (see the README's Limits table)."""

    max_name_length: int = 2048
    """Bytes (UTF-8) of a record, event, RPC or presence name."""
    max_names_per_message: int = 10_000
    """Names in one bulk message (SUBSCRIBE, SUBSCRIBEANDREAD, HEAD_BULK, NOTIFY, ...)."""
    max_subscriptions_per_connection: int = 100_000
    """Names one connection may subscribe to (or provide) at once, per topic: each holds a few
    hundred bytes of the server's memory for as long as the connection lives."""
    max_listen_pattern_length: int = 256
    """Characters of a listen pattern."""
    max_listen_patterns: int = 1_000
    """Listen patterns one connection may hold at once, per topic."""
    max_listen_program_total: int = 20_000
    """RE2 program size of all distinct listen patterns of a topic together: a name's first
    subscriber is matched against every pattern, so this bounds that work (about 10 ms for a
    2 kB name at the limit)."""
    max_listen_pattern_size: int = 1_000
    """RE2 program size (instructions) of a listen pattern: what matching a name costs per
    byte. ``.{1000}.{1000}.{1000}.{1000}z`` is 32,005; ``^user/[a-z]+/.*`` is about 20."""
    max_record_size: int | None = None
    """Bytes of JSON a record may grow to through writes; default ``server.max_message_size``."""
    max_path_depth: int = 256
    """Keys and indices in one record path (``a.b[2].c`` is 4)."""
    max_array_index: int = 100_000
    """The indices of one record path may add up to this (each may pad an array with nulls)."""
    max_patch_entries: int = 1_000
    """Entries (paths) in one PATCH_MULTI."""
    max_concurrent_loads: int = 64
    """Storage reads of records (cache misses) in flight for the whole server."""
    max_loads_per_connection: int = 16
    """Cache misses one client's message may have in flight; its bulk reads proceed in windows
    of this many, so a storm of one client queues behind, not ahead of, the others."""

    def __post_init__(self) -> None:
        for key in (
            "max_name_length",
            "max_names_per_message",
            "max_subscriptions_per_connection",
            "max_listen_pattern_length",
            "max_listen_patterns",
            "max_listen_program_total",
            "max_listen_pattern_size",
            "max_path_depth",
            "max_array_index",
            "max_patch_entries",
            "max_concurrent_loads",
            "max_loads_per_connection",
        ):
            _require(getattr(self, key) >= 1, f"limits.{key} must be at least 1")
        _require(
            self.max_record_size is None or self.max_record_size >= 2,
            "limits.max_record_size must be at least 2",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcConfig:
    ack_timeout: float = 1.0
    response_timeout: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """The HTTP API (deepstream's JSON format) on the server's port."""

    enabled: bool = True
    path: str = "/api"
    """``POST`` here runs a batch of operations; ``POST {path}/auth`` logs in for a token."""
    max_body_size: int = 1_048_576
    """Bytes of a request body; a larger Content-Length gets 413 before the body is read."""
    request_timeout: float = 30.0
    """Seconds a request's operations may take (writes waiting for durability included);
    an operation still unfinished then answers a failure."""
    token_ttl: float = 3600.0
    """Seconds a token from ``POST {path}/auth`` stays valid."""
    max_tokens: int = 100_000
    """Tokens kept at once; past it the oldest are forgotten first."""

    def __post_init__(self) -> None:
        _require(
            self.path.startswith("/") and len(self.path) > 1,
            "http.path must start with / and not be / alone",
        )
        for key in ("max_body_size", "max_tokens"):
            _require(getattr(self, key) >= 1, f"http.{key} must be at least 1")
        for key in ("request_timeout", "token_ttl"):
            _require(getattr(self, key) > 0, f"http.{key} must be positive")

    @property
    def auth_path(self) -> str:
        return self.path.rstrip("/") + "/auth"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenConfig:
    response_timeout: float = 0.5
    shuffle_providers: bool = True
    """Offer a name to its matching listeners in random order (load spreading); false: in
    the reference's order (by pattern, first registered first; then by listener, first to
    listen first)."""
    rematch_interval: float = 30.0
    """Seconds between offers, again, of subscribed names that no listener provides (a
    listener that rejected may accept now); 0 turns it off."""

    def __post_init__(self) -> None:
        _require(self.response_timeout > 0, "listen.response_timeout must be positive")
        _require(self.rematch_interval >= 0, "listen.rematch_interval must be 0 (off) or more")


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
    max_bytes: int = 256 * 1_048_576
    """Bytes of record JSON held in memory (the JSON text length of each record; Python's
    objects take about 1.5 to 3 times that). Evicts like ``max_records``."""

    def __post_init__(self) -> None:
        _require(self.max_records >= 1, "cache.max_records must be at least 1")
        _require(self.max_bytes >= 1, "cache.max_bytes must be at least 1")


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """``cluster: {type: redis, url, prefix, node_name}``: run as one node of several sharing
    Redis (see docs/cluster.md). Absent: the node runs alone and needs no Redis."""

    type: str = "redis"
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "recordgate"
    """Namespace of every key and channel, so several clusters can share one Redis."""
    node_name: str = ""
    """How this node is named in Redis and logs; default ``host:port``."""
    heartbeat_interval: float = 1.0
    """Seconds between this node's heartbeats (and its sweeps for dead nodes)."""
    node_timeout: float = 3.0
    """Seconds without a heartbeat after which a node counts as dead and is reaped."""
    max_bus_queue: int = 10_000
    """Messages waiting to be published to other nodes; beyond, cross-node emits are dropped
    (and counted) while local subscribers are still served."""
    max_bus_queue_bytes: int = 64 * 1_048_576
    """Bytes (JSON) of those waiting messages; beyond, they are dropped and counted the same
    way: emits may be up to ``server.max_message_size`` each."""
    max_remote_rpcs: int = 10_000
    """RPC requests of this node's clients open at other nodes at once, and requests of
    other nodes held here at once; beyond, a request that only another node could serve (or
    that another node sends here) gets REQUEST_ERROR naming this limit."""
    record_ttl: float = 300.0
    """Seconds a record's state stays in Redis once storage holds it (a record read again
    within it is not read from storage). A storage read that began longer ago than this is
    not made the state (the node reads again): a state may have been stored and expired since."""
    absent_ttl: float = 5.0
    """Seconds Redis keeps the state of a record read while it exists nowhere (what makes its
    creation compare-and-set): reads of absent names, which any reader can make at will, hold
    Redis memory only this long, not ``record_ttl``. At most ``record_ttl``."""
    flush_lease: float = 10.0
    """Seconds one node may flush a record before another may take over (its lease). Longer
    than a storage write can take (the connector's timeout)."""
    orphan_after: float = 5.0
    """Seconds a committed record may wait for storage before any node flushes it (the
    committing node died or stalled)."""
    max_commit_retries: int = 16
    """Runs of a write that keeps losing the race for its version (other nodes wrote first),
    each on the current state after a short random pause, before the client gets
    RECORD_UPDATE_ERROR."""
    max_bus_lag: float = 2.0
    """Seconds a node waits for its bus to deliver the changes before a state it read from
    Redis (a read, a commit's reply) before answering with it; past it the client gets
    RECORD_UPDATE_ERROR / RECORD_LOAD_ERROR rather than an answer ahead of its updates."""
    max_redis_connections: int = 32
    """Connections this node opens to Redis for commands (commits, reads, flushes, presence;
    the bus has one more of its own). Commands beyond wait for a free one, up to 5 s, then
    fail as Redis being unreachable: a burst of writes to many records cannot open a
    connection per record."""
    bus_check_interval: float = 1.0
    """Seconds of quiet on the bus (this node's Pub/Sub connection) after which it PINGs Redis,
    and seconds it waits for any answer before counting the connection lost (resubscribe,
    re-read): a connection that died silently is noticed within twice this."""

    def __post_init__(self) -> None:
        _require(self.type == "redis", "cluster.type must be redis (the only cluster engine)")
        _require(
            self.url.startswith(("redis://", "rediss://", "unix://")),
            "cluster.url must be a redis://, rediss:// or unix:// URL",
        )
        _require(
            bool(self.prefix) and not any(c in self.prefix for c in "{}: \t\n"),
            "cluster.prefix must be non-empty, without braces, colons or whitespace",
        )
        _require(self.heartbeat_interval > 0, "cluster.heartbeat_interval must be positive")
        _require(
            self.node_timeout >= 2 * self.heartbeat_interval,
            "cluster.node_timeout must be at least twice cluster.heartbeat_interval",
        )
        _require(self.max_bus_queue >= 1, "cluster.max_bus_queue must be at least 1")
        _require(self.max_bus_queue_bytes >= 1, "cluster.max_bus_queue_bytes must be at least 1")
        _require(self.max_remote_rpcs >= 1, "cluster.max_remote_rpcs must be at least 1")
        _require(
            self.max_redis_connections >= 2, "cluster.max_redis_connections must be at least 2"
        )
        _require(
            0.05 <= self.bus_check_interval <= 60,
            "cluster.bus_check_interval must be between 0.05 and 60 seconds",
        )
        _require(self.record_ttl >= 30, "cluster.record_ttl must be at least 30 seconds")
        _require(
            0 < self.absent_ttl <= self.record_ttl,
            "cluster.absent_ttl must be positive and at most cluster.record_ttl",
        )
        _require(self.flush_lease > 0, "cluster.flush_lease must be positive")
        _require(self.orphan_after > 0, "cluster.orphan_after must be positive")
        _require(self.max_commit_retries >= 1, "cluster.max_commit_retries must be at least 1")
        _require(self.max_bus_lag > 0, "cluster.max_bus_lag must be positive")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    write_behind: WriteBehindConfig = field(default_factory=WriteBehindConfig)
    auth: list[dict[str, Any]] = field(default_factory=list)
    """Authentication strategies tried in order (``gateway.auth``); empty: open auth."""
    permissions: str = ""
    """A Valve permission file (YAML or JSON; ``gateway.permissions``); empty: everything is
    allowed."""
    permissions_max_cross_reads: int = 8
    """Records one rule may read with ``_()`` per check; past it the check is a
    MESSAGE_PERMISSION_ERROR."""
    cluster: ClusterConfig | None = None
    """Several nodes as one server over Redis (docs/cluster.md); None: this node alone."""

    def __post_init__(self) -> None:
        _require(
            self.permissions_max_cross_reads >= 0,
            "permissions_max_cross_reads must be at least 0",
        )
        if self.cluster is None:
            return
        storage = self.storage
        local = storage.type == "memory" or (
            storage.type == "sql" and (not storage.url or storage.url.startswith("sqlite"))
        )
        _require(
            not local,
            "cluster: every node must share one storage (PostgreSQL, MariaDB, MongoDB, ...); "
            f"storage type {storage.type!r}"
            + (f" at {storage.url.split(':', 1)[0]}" if storage.url else " (embedded SQLite)")
            + " is local to one node",
        )

    @property
    def max_record_size(self) -> int:
        """``limits.max_record_size``, or by default ``server.max_message_size``."""
        return self.limits.max_record_size or self.server.max_message_size


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
    return _relative_to(config_from_dict(raw or {}), Path(path).parent)


_PATH_KEYS = ("users", "public_key", "jwks")


def _relative_to(config: Config, base: Path) -> Config:
    """Files named in the config (permissions, users, keys, certificates) are relative to its
    directory."""

    def resolve(value: Any) -> Any:
        return str(base / value) if isinstance(value, str) and value else value

    auth = [
        {k: resolve(v) if k in _PATH_KEYS else v for k, v in entry.items()}
        if isinstance(entry, dict)
        else entry
        for entry in config.auth
    ]
    tls = config.server.tls
    if tls is not None:
        tls = dataclasses.replace(
            tls, cert=resolve(tls.cert), key=resolve(tls.key), ca=resolve(tls.ca)
        )
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, tls=tls),
        auth=auth,
        permissions=resolve(config.permissions),
    )
