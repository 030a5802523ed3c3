"""The bus: one Redis channel that carries events and presence notices between nodes, and
each node's own channel for messages directed to it (RPC between nodes).

Publishing never blocks a client: messages wait in a bounded queue that one task publishes to
Redis, in order, everything queued in one PUBLISH ``[origin, [message, ...]]`` (up to
``_BATCH_BYTES``): under load the cost per message in Redis and in every receiving node is a
fraction of a PUBLISH. Scripts publish single messages ``["", kind, name]`` (presence).
Past ``max_queue`` (Redis slow or gone) new messages are dropped and counted;
what a dropped message carried is at-most-once anyway (events), or made up for once the queue
has drained (``on_drops_over``: listening). Receiving runs in its own
task on its own connection, reconnecting (with backoff) when Redis goes away; what was
published meanwhile is lost (Pub/Sub keeps nothing), so ``on_resubscribed`` lets the node
re-read what it learns from notices. Directed messages share the queue (one order for
everything a node sends) and are batched like the rest, by destination.

A connection that dies silently (a partition, a peer that stops answering without a close or
reset) would otherwise go unnoticed for as long as TCP allows: the receiver PINGs on the
subscribed connection once it heard nothing for ``check_interval`` and counts Redis lost when
nothing (the pong or any message) arrives within ``check_interval`` after, exactly as if the
connection had failed. Nothing heard for ``2 * check_interval`` therefore means resubscribing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..exceptions import ClusterUnavailable
from ..limits import ThrottledLog
from .stopping import stop

__all__ = ["Bus"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

_BATCH_BYTES = 256 * 1024
"""JSON bytes gathered into one PUBLISH (a larger single message goes alone)."""

_PING = b"recordgate-bus"
"""The argument of the bus's own PINGs (their pongs are only heard, never dispatched)."""

Receiver = Callable[[list[Any]], None]


class Bus:
    def __init__(
        self,
        redis: Any,
        subscriber: Any,
        channel: str,
        *,
        node_id: str,
        max_queue: int,
        max_queue_bytes: int = 64 * 1_048_576,
        receive: Receiver,
        own_channel: str | None = None,
        check_interval: float = 1.0,
    ) -> None:
        self._redis = redis
        self._subscriber = subscriber
        self.channel = channel
        self.own_channel = own_channel
        """This node's channel for directed messages (``send``), subscribed with the bus."""
        self.node_id = node_id
        self._receive = receive
        self._check_interval = check_interval
        self.on_resubscribed: Callable[[], None] | None = None
        """Called when the bus is subscribed again after losing Redis."""
        self.on_drops_over: Callable[[], None] | None = None
        """Called when the queue has drained after dropping messages: what they carried may
        be made up for now (there is room again)."""
        self._dropped_since = False
        self._subscriptions = 0
        self._subscribed = False
        self._queue: deque[tuple[str, str]] = deque()  # (channel, JSON)
        self._head = json.dumps([node_id])[:-1] + ",["
        """How this node's batches begin (``["id",[``)."""
        self._own = self._head.encode()
        """... so they are skipped unread when they come back."""
        self._max_queue = max_queue
        self._max_bytes = max_queue_bytes
        self.queued_bytes = 0
        """JSON bytes waiting in the queue."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        """Set while nothing waits to be published."""
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub: Any = None
        """The receiver's subscription (closed under it if it does not stop when cancelled)."""
        self._closing = False
        """Set by ``close``: the loops return at their next turn instead of retrying, even if
        the driver swallowed their cancellation."""
        self.published = 0
        self.dropped = 0
        self.received = 0
        self.lost = 0
        """Times the subscription was lost (failed, or silent past ``check_interval``)."""

    async def start(self) -> None:
        """Subscribe (confirmed by Redis) and start the sender and receiver tasks."""
        pubsub = await self._subscribe()
        self._subscribed_now()
        self._tasks = [
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._receive_loop(pubsub)),
        ]

    async def close(self) -> None:
        """Publish what is queued (for up to 2 s), then stop, within about 2 s more whatever
        Redis or its driver do; what could not be published is logged."""
        if self._queue and self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._idle.wait()
        if self._queue:
            log.warning(
                "shutdown: %d messages for other nodes (%d bytes) were not published "
                "(Redis unreachable or slow)",
                len(self._queue),
                self.queued_bytes,
            )
        self._closing = True
        self._wake.set()
        await stop(self._tasks, what="the cluster bus", unblock=self._unblock)

    def _closed(self) -> bool:
        return self._closing  # a call: mypy would take it for unchanged across awaits

    async def _unblock(self) -> None:
        """Close the receiver's connection under it: its read fails, and it returns."""
        connection = getattr(self._pubsub, "connection", None)
        if connection is not None:
            await connection.disconnect(nowait=True)

    def subscription(self) -> int | None:
        """Which subscription delivers now (a number that changes each time the bus subscribes
        again), None from the moment it lost Redis until it is subscribed again: whatever was
        published in between never reaches this node."""
        return self._subscriptions if self._subscribed else None

    def _subscribed_now(self) -> None:
        self._subscriptions += 1
        self._subscribed = True

    def publish(self, message: list[Any], channel: str | None = None) -> None:
        """Queue ``message`` (a JSON array ``[kind, name, ...]``) for the other nodes, or for
        the one node whose own ``channel`` it is."""
        text = json.dumps(message, separators=(",", ":"))
        if len(self._queue) >= self._max_queue or self.queued_bytes + len(text) > self._max_bytes:
            self.dropped += 1
            self._dropped_since = True
            _throttled.warning(
                "cluster bus queue full (cluster.max_bus_queue %d) or over "
                "cluster.max_bus_queue_bytes (%d): a message to other nodes was dropped "
                "(Redis slow or unreachable)",
                self._max_queue,
                self._max_bytes,
            )
            return
        self._queue.append((channel or self.channel, text))
        self.queued_bytes += len(text)
        self._idle.clear()
        self._wake.set()

    async def _send_loop(self) -> None:
        delay = 0.1
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and not self._closing:
                count, size = 0, 0
                channel = self._queue[0][0]
                for to, text in self._queue:
                    if count and (to != channel or size + len(text) > _BATCH_BYTES):
                        break
                    count += 1
                    size += len(text) + 1
                items = ",".join(self._queue[i][1] for i in range(count))
                payload = f"{self._head}{items}]]"
                try:
                    await self._redis.publish(channel, payload)
                except Exception as exc:  # redis errors: keep the queue, retry with backoff
                    _throttled.warning("cluster bus: cannot publish to Redis (%s); retrying", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.1
                for _ in range(count):
                    self.queued_bytes -= len(self._queue.popleft()[1])
                self.published += count
            self._idle.set()
            if self._dropped_since and self.on_drops_over is not None:
                self._dropped_since = False
                try:
                    self.on_drops_over()
                except Exception:
                    log.exception("cluster bus: making up for dropped messages failed")

    async def _subscribe(self) -> Any:
        pubsub = self._subscriber.pubsub()
        channels = [self.channel] if self.own_channel is None else [self.channel, self.own_channel]
        await pubsub.subscribe(*channels)
        # The confirmations: from here on every message published to them reaches us.
        confirmed = 0
        while True:
            message = await pubsub.get_message(timeout=5.0)
            if message is None:
                raise TimeoutError("Redis did not confirm the cluster bus subscription")
            if message["type"] == "subscribe":
                confirmed += 1
                if confirmed == len(channels):
                    return pubsub

    async def _receive_loop(self, pubsub: Any) -> None:
        delay = 0.1
        self._pubsub = pubsub
        while True:
            try:
                await self._deliver(pubsub)
            except asyncio.CancelledError:
                await _close_quietly(pubsub)
                raise
            except Exception as exc:
                self._subscribed = False
                await _close_quietly(pubsub)
                if self._closed():
                    return
                self.lost += 1
                _throttled.warning("cluster bus: lost Redis (%s); resubscribing", exc)
                while True:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    if self._closed():
                        return
                    try:
                        pubsub = await self._subscribe()
                        break
                    except Exception as again:
                        _throttled.warning("cluster bus: cannot resubscribe (%s)", again)
                self._pubsub = pubsub
                if self._closed():
                    await _close_quietly(pubsub)
                    return
                self._subscribed_now()
                log.info("cluster bus: subscribed again")
                delay = 0.1
                if self.on_resubscribed is not None:
                    try:
                        self.on_resubscribed()
                    except Exception:
                        log.exception("cluster bus: catching up after resubscribing failed")

    async def _deliver(self, pubsub: Any) -> None:
        """Dispatch what ``pubsub`` receives; returns only by raising: the connection failed,
        or fell silent (nothing heard within ``check_interval`` of a PING sent after
        ``check_interval`` of quiet), or was subscribed again underneath (the driver
        reconnected on its own: what was published in between was lost all the same)."""
        loop = asyncio.get_running_loop()
        interval = self._check_interval
        heard = loop.time()
        pinged: float | None = None
        while not self._closing:
            deadline = (heard if pinged is None else pinged) + interval
            # At least one poll of the socket past the deadline: after a stalled event loop
            # the answer may wait unread in the kernel.
            message = await pubsub.get_message(timeout=max(deadline - loop.time(), 0.01))
            now = loop.time()
            if message is not None:
                heard, pinged = now, None
                kind = message.get("type")
                if kind == "message":
                    self._dispatch(message["data"])
                elif kind != "pong":
                    raise ClusterUnavailable(f"the bus's connection was reset ({kind})")
            elif now < deadline:
                continue
            elif pinged is None:
                # The connection's own send, not pubsub.ping(): the driver's retries would
                # reconnect and subscribe again unseen. Written to a dead connection, it
                # succeeds; its answer never comes.
                async with asyncio.timeout(interval):
                    await pubsub.connection.send_command("PING", _PING, check_health=False)
                pinged = now
            else:
                raise ClusterUnavailable(
                    "Redis did not answer the bus's PING within cluster.bus_check_interval "
                    f"({interval:g} s)"
                )
        raise ClusterUnavailable("the bus is closing")

    def _dispatch(self, raw: bytes) -> None:
        if raw.startswith(self._own):
            return
        try:
            decoded = json.loads(raw)
        except ValueError:
            _throttled.warning("cluster bus: ignoring a message that is not JSON")
            return
        if not isinstance(decoded, list) or len(decoded) < 2:
            return
        if len(decoded) == 2 and isinstance(decoded[1], list):  # a node's batch
            if decoded[0] == self.node_id:
                return
            messages = decoded[1]
        else:  # a script's single message: ["", kind, name]
            messages = [decoded[1:]]
        for message in messages:
            if not isinstance(message, list) or len(message) < 2:
                continue
            self.received += 1
            try:
                self._receive(message)
            except Exception:
                _throttled.exception("cluster bus: handling %r failed", message[:2])


async def _close_quietly(pubsub: Any) -> None:
    with contextlib.suppress(Exception):
        await pubsub.aclose()
