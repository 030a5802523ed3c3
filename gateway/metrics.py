"""``GET /metrics``: the server's counters in the Prometheus text exposition format (0.0.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .limits import LimitTrips
from .protocol import Topic, payload
from .store import StoreStats

if TYPE_CHECKING:
    from .cluster import ClusterStats

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_STORE_METRICS = (
    ("pending", "gauge", "Writes accepted but not yet in storage (queued or in flight)."),
    ("dirty", "gauge", "Records with writes not yet in storage."),
    ("cached", "gauge", "Records held in the cache."),
    ("cached_bytes", "gauge", "JSON bytes of the records held in the cache (cache.max_bytes)."),
    ("waiters", "gauge", "Acknowledgements waiting for durability (count toward max_pending)."),
    ("loads_waiting", "gauge", "Storage reads queued behind limits.max_concurrent_loads."),
    ("flushed", "counter", "Operations written to storage."),
    ("retried", "counter", "Flush attempts repeated after storage was unavailable."),
    ("failed", "counter", "Operations storage refused for good."),
    ("conflicts", "counter", "Flushes that met a newer snapshot in storage."),
    (
        "reverted",
        "counter",
        "States storage refused for good that were replaced with storage's state.",
    ),
)

_CLUSTER_METRICS = (
    ("alive_nodes", "gauge", "Cluster nodes with a heartbeat at the last sweep."),
    ("reaped_nodes", "counter", "Dead nodes this node removed from the cluster."),
    ("redis_connected", "gauge", "1 while the last heartbeat reached Redis."),
    ("bus_published", "counter", "Messages this node published to the other nodes."),
    ("bus_received", "counter", "Messages received from the other nodes."),
    (
        "bus_dropped",
        "counter",
        "Messages to other nodes dropped (cluster.max_bus_queue or max_bus_queue_bytes full).",
    ),
    ("bus_queued_bytes", "gauge", "JSON bytes waiting to be published (max_bus_queue_bytes)."),
    ("bus_subscribed", "gauge", "1 while the bus's subscription delivers other nodes' messages."),
    (
        "bus_lost",
        "counter",
        "Times the bus lost its subscription (failed, or silent past cluster.bus_check_interval).",
    ),
    ("presence_pending", "gauge", "Presence changes of this node not yet in Redis."),
    (
        "redis_connections",
        "gauge",
        "Command connections this node holds to Redis (cluster.max_redis_connections).",
    ),
    (
        "rpc_remote_open",
        "gauge",
        "RPC requests of this node's clients open at other nodes (cluster.max_remote_rpcs).",
    ),
    ("rpc_remote_names", "gauge", "RPC names other nodes provide, as this node knows them."),
    (
        "rpc_remote_held",
        "gauge",
        "RPC requests of other nodes held here for local providers (cluster.max_remote_rpcs).",
    ),
    ("record_commits", "counter", "Record changes this node committed in Redis."),
    (
        "record_commit_conflicts",
        "counter",
        "Record changes that lost the race for their version and ran again on the current one.",
    ),
    ("record_flush_busy", "counter", "Flush claims that found another node flushing the record."),
    (
        "record_flush_fenced",
        "counter",
        "Flush writes storage refused for a higher fence (a newer flush stored first).",
    ),
    (
        "record_orphans_flushed",
        "counter",
        "Records this node flushed after their committer left them (cluster.orphan_after).",
    ),
    (
        "record_bus_lagged",
        "counter",
        "Record answers refused because the bus lagged past cluster.max_bus_lag.",
    ),
    ("record_reads_open", "gauge", "Record names this node is reading from Redis or storage now."),
    (
        "record_position_waiters",
        "gauge",
        "Record answers waiting for the bus to deliver their position (cluster.max_bus_lag).",
    ),
    ("listen_coordinated", "gauge", "Subscribed names whose listen search this node runs."),
    ("listen_pending", "gauge", "Listen changes of this node not yet in Redis."),
)


def render(
    *,
    connections: int,
    store: StoreStats,
    trips: LimitTrips | None = None,
    send_buffers: int = 0,
    cluster: ClusterStats | None = None,
    received: list[int] | None = None,
    sent: list[int] | None = None,
    records_subscribed: int = 0,
    event_loop: str = "asyncio",
    rule_read_errors: dict[str, int] | None = None,
) -> str:
    lines = [
        "# HELP recordgate_event_loop_info The event loop this server runs on (server.event_loop).",
        "# TYPE recordgate_event_loop_info gauge",
        f'recordgate_event_loop_info{{loop="{event_loop}"}} 1',
        "# HELP recordgate_connections Open client connections.",
        "# TYPE recordgate_connections gauge",
        f"recordgate_connections {connections}",
        "# HELP recordgate_send_buffer_bytes Bytes held for slow clients (counted toward "
        "server.max_send_buffer_total).",
        "# TYPE recordgate_send_buffer_bytes gauge",
        f"recordgate_send_buffer_bytes {send_buffers}",
        "# HELP recordgate_limit_trips_total Requests or clients refused by a limit, by its "
        "configuration key.",
        "# TYPE recordgate_limit_trips_total counter",
    ]
    for key, count in sorted((trips.counts if trips is not None else {}).items()):
        lines.append(f'recordgate_limit_trips_total{{limit="{key}"}} {count}')
    for field, kind, text in _STORE_METRICS:
        name = f"recordgate_store_{field}" + ("_total" if kind == "counter" else "")
        lines += [
            f"# HELP {name} {text}",
            f"# TYPE {name} {kind}",
            f"{name} {getattr(store, field)}",
        ]
    name = "recordgate_json_refused_total"
    lines += [
        f"# HELP {name} JSON refused at the edge (INVALID_MESSAGE_DATA) by reason; "
        '"unencodable": stored values that could not be sent as JSON.',
        f"# TYPE {name} counter",
    ]
    lines += [f'{name}{{reason="{r}"}} {payload.REFUSED[r]}' for r in payload.REASONS]
    if cluster is not None:
        for field, kind, text in _CLUSTER_METRICS:
            name = f"recordgate_cluster_{field}" + ("_total" if kind == "counter" else "")
            value = int(getattr(cluster, field))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    for direction, counts in (("received", received), ("sent", sent)):
        name = f"recordgate_messages_{direction}_total"
        lines += [
            f"# HELP {name} Protocol messages {direction} "
            + (
                "from clients for a topic handler, HTTP API operations included (the handshake and "
                "logins are not counted), "
                if direction == "received"
                else "to clients (replies and fan-outs), "
            )
            + "by topic.",
            f"# TYPE {name} counter",
        ]
        lines += [
            f'{name}{{topic="{topic.name.lower()}"}} {(counts or _NONE)[topic]}' for topic in Topic
        ]
    lines += [
        "# HELP recordgate_records_subscribed Records with at least one subscriber.",
        "# TYPE recordgate_records_subscribed gauge",
        f"recordgate_records_subscribed {records_subscribed}",
    ]
    name = "recordgate_storage_errors_total"
    lines += [
        f"# HELP {name} Storage errors by kind: unavailable and timeout (the batch is retried), "
        "rejected and other (an operation failed for good).",
        f"# TYPE {name} counter",
    ]
    errors = store.errors
    lines += [f'{name}{{kind="{kind}"}} {errors.get(kind, 0)}' for kind in ERROR_KINDS]
    name = "recordgate_permission_read_errors_total"
    lines += [
        f"# HELP {name} Records a permission rule read (_()) that storage failed, by kind: each "
        "refused its message with MESSAGE_PERMISSION_ERROR (an outage, not policy).",
        f"# TYPE {name} counter",
    ]
    failed = rule_read_errors or {}
    lines += [f'{name}{{kind="{kind}"}} {failed.get(kind, 0)}' for kind in ERROR_KINDS]
    histogram = store.flush_seconds
    if histogram is not None:
        name = "recordgate_store_flush_duration_seconds"
        lines += [
            f"# HELP {name} Time each storage write of a batch took, failed attempts included.",
            f"# TYPE {name} histogram",
        ]
        lines += [f'{name}_bucket{{le="{le}"}} {n}' for le, n in histogram.cumulative()]
        lines += [f"{name}_sum {histogram.sum}", f"{name}_count {histogram.count}"]
    return "\n".join(lines) + "\n"


ERROR_KINDS = ("unavailable", "timeout", "rejected", "other")
_NONE = [0] * 128
