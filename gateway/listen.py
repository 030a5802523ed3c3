"""Listening: clients that register a name pattern and offer to provide matching names.

When a name gets its first subscriber, the listeners whose pattern matches are asked one at a
time (shuffled for load spreading, or in the reference's order: ``shuffle``) with
SUBSCRIPTION_FOR_PATTERN_FOUND; the first to answer LISTEN_ACCEPT becomes the name's provider,
a LISTEN_REJECT or no answer within ``timeout`` moves on to the next. The provider hears
SUBSCRIPTION_FOR_PATTERN_REMOVED when the last subscriber leaves; when the provider goes away
(UNLISTEN or disconnect) the search starts over. For records,
subscribers learn SUBSCRIPTION_HAS_PROVIDER / SUBSCRIPTION_HAS_NO_PROVIDER. Every
``rematch_interval`` seconds (while anyone listens), subscribed names nobody provides and
nobody is being asked about are offered again, as the reference's ``rematchInterval``.

Invariants:
- a name is in at most one of ``_providers`` (provided) and ``_searches`` (being offered);
- ``_providers[name].conn`` holds ``name`` in ``_provided_by[conn]`` and vice versa;
- ``_listeners[pattern]`` is never empty; ``_patterns`` has exactly the keys of ``_listeners``.

On a cluster node (``cluster`` set, ``gateway.cluster.listen``) one node coordinates each
name cluster-wide (``cluster.coordinates``): it runs the search, over its own listeners and the
other nodes' (an ``_Offer`` whose ``conn`` is another node, ``remote``), and holds the provider.
A node asked for a name (``from_node``: SUBSCRIPTION_FOR_PATTERN_FOUND) asks its own
listeners of that pattern in turn, echoing FOUND to the coordinator each time it moves on (the
coordinator's wait restarts), and answers LISTEN_ACCEPT or, when all declined, LISTEN_REJECT;
it tells the coordinator SUBSCRIPTION_FOR_PATTERN_REMOVED when its provider goes away, and
hears it when the name is no longer wanted. The first and last local subscriber of a name
go to the cluster (``subscribed`` / ``unsubscribed``), which calls ``coordinate`` /
``vacated`` here on the coordinating node.

Patterns are only matched when a name gets its first subscriber (against every pattern) or when
a new listener arrives (against every subscribed name), never per message. What one match costs
is bounded: names by ``limits.max_name_length``, patterns by their length and by RE2's program
size (``limits.max_listen_pattern_size``: matching costs about that much per byte of name), all
patterns of a topic together by ``limits.max_listen_program_total``, and a connection listens to
at most ``limits.max_listen_patterns`` patterns.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import re2

from .config import LimitsConfig
from .connection import Connection
from .exceptions import InvalidData, LimitExceeded
from .handler import Peer
from .limits import LimitTrips, ThrottledLog
from .protocol import EventAction, Message, RecordAction, Topic, encode
from .subscriptions import SubscriptionRegistry, duplicate

__all__ = ["MAX_PATTERN_LENGTH", "ListenCluster", "ListenRegistry", "compile_pattern"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

MAX_PATTERN_LENGTH = 256
"""Default ``limits.max_listen_pattern_length``, in characters."""
MAX_PATTERN_SIZE = 1000
"""Default ``limits.max_listen_pattern_size``: RE2 program size (instructions)."""

SCAN_BYTES = 65_536
"""Bytes of subscribed names a new listener's pattern is matched against per loop pass (at
``max_listen_pattern_size`` about 30 ms), so a LISTEN with many names subscribed never
freezes the loop."""

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would write every bad pattern (and DFA overflow) to stderr


def compile_pattern(
    pattern: str, *, max_length: int = MAX_PATTERN_LENGTH, max_size: int = MAX_PATTERN_SIZE
) -> re2._Regexp:
    """Compile a listen pattern (a JS regex, unanchored) with RE2.

    RE2 matches in time linear in the name, but the factor is the program size, which a short
    pattern can make huge (``.{1000}.{1000}.{1000}.{1000}z``: 32,005): it is bounded too.
    Backreferences and lookaround, which JS allows, are refused. Raises ``InvalidData`` for
    those and for syntax errors, ``LimitExceeded`` past ``max_length`` or ``max_size``.
    """
    if len(pattern) > max_length:
        raise LimitExceeded(
            "limits.max_listen_pattern_length",
            f"listen pattern longer than {max_length} characters",
        )
    try:
        regex = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raise InvalidData(f"invalid listen pattern: {exc}") from exc
    if regex.programsize > max_size:
        raise LimitExceeded(
            "limits.max_listen_pattern_size",
            f"listen pattern too complex ({regex.programsize} RE2 instructions, over {max_size})",
        )
    return regex


class ListenCluster(Protocol):
    """The other nodes of a cluster, for one topic (``gateway.cluster.listen``)."""

    def offers(self, name: str) -> list[tuple[Peer, str]]:
        """(node, pattern) for each other node's pattern that matches ``name``."""

    def listening(self, node: Peer, pattern: str) -> bool:
        """Whether ``node`` still listens to ``pattern``."""

    def coordinates(self, name: str) -> bool:
        """Whether this node runs the search for ``name`` (someone anywhere subscribes)."""

    def coordinated(self) -> Iterable[str]:
        """Every name this node runs the search for."""

    def subscribed(self, name: str) -> None:
        """``name`` has subscribers here (its first, or a pattern now matches it)."""

    def unsubscribed(self, name: str) -> None:
        """``name`` lost its last subscriber here."""

    def listened(self, pattern: str, listening: bool) -> None:
        """``pattern`` got its first listener here, or lost its last."""

    def listeners_elsewhere(self) -> bool:
        """Whether any other node listens to anything."""

    def provided(self, name: str, has_provider: bool) -> None:
        """Records: ``name`` (coordinated here) got a provider or lost it: tell every node."""

    def provided_elsewhere(self, name: str) -> bool:
        """Records: whether ``name``, coordinated by another node, has a provider."""


@dataclass(slots=True, eq=False)
class _Offer:
    """One listener (or another node, ``remote``) and the pattern through which it matched."""

    conn: Peer
    pattern: str
    remote: bool = False


@dataclass(slots=True, eq=False)
class _Search:
    """A name being offered: to ``current`` now, then to ``remaining`` in order; ``origin``:
    the coordinating node this node searches its own listeners for."""

    current: _Offer
    remaining: list[_Offer]
    timer: asyncio.TimerHandle | None = None
    origin: Peer | None = None


class ListenRegistry:
    """Listeners and providers for one topic (EVENT or RECORD) over its subscriptions.

    Takes over the ``on_first`` and ``on_last`` hooks of ``subscriptions`` (and, for records,
    ``on_added``).
    """

    def __init__(
        self,
        topic: Topic,
        subscriptions: SubscriptionRegistry,
        *,
        timeout: float,
        limits: LimitsConfig | None = None,
        trips: LimitTrips | None = None,
    ) -> None:
        limits = limits or LimitsConfig()
        self.trips = trips if trips is not None else LimitTrips()
        self._max_length = limits.max_listen_pattern_length
        self._max_size = limits.max_listen_pattern_size
        self._max_patterns = limits.max_listen_patterns
        self._max_program_total = limits.max_listen_program_total
        self._program_total = 0  # RE2 program size of every pattern in _patterns
        self.topic = topic
        self.subscriptions = subscriptions
        self.timeout = timeout
        self.shuffle = True
        """Offer in random order; False: by pattern (first registered first), then by
        listener (first to listen first), as the reference."""
        self.rematch_interval = 0.0
        """Seconds between re-offers of unprovided names; 0: never."""
        self._rematch_timer: asyncio.TimerHandle | None = None
        self._actions: type[EventAction] | type[RecordAction] = (
            RecordAction if topic == Topic.RECORD else EventAction
        )
        self._patterns: dict[str, re2._Regexp] = {}
        self._listeners: dict[str, dict[Connection, None]] = {}  # ordered sets
        self._patterns_of: dict[Connection, set[str]] = {}
        self._providers: dict[str, _Offer] = {}
        self._provided_by: dict[Peer, set[str]] = {}
        self._searches: dict[str, _Search] = {}
        self._origins: dict[str, Peer] = {}
        """Names a listener here provides for another node (the coordinator)."""
        self.cluster: ListenCluster | None = None
        """Set on a cluster node (``gateway.cluster.listen``)."""
        subscriptions.on_first = self._first_subscriber
        subscriptions.on_last = self._last_subscriber
        # Only record subscribers are told about providers; events skip the per-subscribe hook.
        if topic == Topic.RECORD:
            subscriptions.on_added = self._on_subscriber_added

    # -- messages ------------------------------------------------------------------------

    def handle(self, conn: Connection, msg: Message) -> None:
        actions = self._actions
        if msg.action == actions.LISTEN:
            self._listen(conn, msg)
        elif msg.action == actions.UNLISTEN:
            self._unlisten(conn, msg)
        elif msg.action in (actions.LISTEN_ACCEPT, actions.LISTEN_REJECT):
            self._answer(conn, msg)

    def on_disconnect(self, conn: Connection) -> None:
        for pattern in list(self._patterns_of.get(conn, ())):
            self._remove_listener(conn, pattern)

    def _listen(self, conn: Connection, msg: Message) -> None:
        pattern = msg.name
        try:
            if pattern is None:
                raise InvalidData("listen pattern is missing")
            if len(self._patterns_of.get(conn, ())) >= self._max_patterns:
                raise LimitExceeded("limits.max_listen_patterns", "too many listen patterns")
            regex = self._patterns.get(pattern)
            if regex is None:
                regex = compile_pattern(
                    pattern, max_length=self._max_length, max_size=self._max_size
                )
                if self._program_total + regex.programsize > self._max_program_total:
                    raise LimitExceeded(
                        "limits.max_listen_program_total",
                        "the server's listen patterns are as complex as they may be",
                    )
        except InvalidData as exc:
            if isinstance(exc, LimitExceeded):
                self.trips.trip(exc.key)
            _throttled.info("%r sent a bad listen pattern: %s", conn, exc)
            conn.send(Message(self.topic, self._actions.INVALID_LISTEN_REGEX, name=pattern))
            return
        listeners = self._listeners.setdefault(pattern, {})
        if conn in listeners:
            conn.send(duplicate(msg, self._actions.MULTIPLE_SUBSCRIPTIONS, pattern))
            return
        listeners[conn] = None
        if pattern not in self._patterns:
            self._program_total += regex.programsize
            if self.cluster is not None:
                self.cluster.listened(pattern, True)
        self._patterns[pattern] = regex
        self._patterns_of.setdefault(conn, set()).add(pattern)
        conn.send(msg.ack())
        self._offer_subscribed(_Offer(conn, pattern), regex, self._names(), 0)
        self._start_rematching()

    def _start_rematching(self) -> None:
        if self._rematch_timer is None and self.rematch_interval > 0:
            self._rematch_timer = asyncio.get_running_loop().call_later(
                self.rematch_interval, self._rematch
            )

    def _offer_subscribed(
        self, offer: _Offer, regex: re2._Regexp, names: list[str], start: int
    ) -> None:
        """Offer ``names`` (subscribed when ``offer``'s listener arrived) that it matches and
        nobody provides; a search in flight just gains it as a last resort. At most
        ``SCAN_BYTES`` of names are matched per loop pass; the rest in later passes. On a
        cluster node a subscribed name this node does not coordinate goes to the cluster."""
        if not self._still_listening(offer):
            return  # unlistened (or gone) meanwhile
        scanned = 0
        for i in range(start, len(names)):
            if scanned >= SCAN_BYTES:
                loop = asyncio.get_running_loop()
                loop.call_soon(self._offer_subscribed, offer, regex, names, i)
                return
            name = names[i]
            scanned += len(name)
            if name in self._providers or not regex.search(name):
                continue
            if not self._mine(name):
                if self.cluster is not None and self.subscriptions.has_subscribers(name):
                    self.cluster.subscribed(name)  # its coordinator will offer it
                continue
            search = self._searches.get(name)
            if search is None:
                self._start_search(name)
            elif search.origin is None and not any(
                o.conn is offer.conn and o.pattern == offer.pattern
                for o in (search.current, *search.remaining)
            ):  # a search started between two passes holds it already
                search.remaining.append(_Offer(offer.conn, offer.pattern, offer.remote))

    def _unlisten(self, conn: Connection, msg: Message) -> None:
        # As the reference does, UNLISTEN of a pattern not listened to is silently ignored.
        if msg.name is None or msg.name not in self._patterns_of.get(conn, ()):
            return
        conn.send(msg.ack())
        self._remove_listener(conn, msg.name)

    def _answer(self, conn: Peer, msg: Message) -> None:
        """LISTEN_ACCEPT / LISTEN_REJECT; only the listener currently asked is heard."""
        name = msg.subscription
        search = self._searches.get(name) if name is not None else None
        if name is None or search is None or search.current.conn is not conn:
            log.debug("%r answered an offer it does not hold: %r", conn, msg)
            return
        if search.timer is not None:
            search.timer.cancel()
        if msg.action == self._actions.LISTEN_REJECT:
            self._offer_next(name, search)
            return
        del self._searches[name]
        self._providers[name] = search.current
        self._provided_by.setdefault(conn, set()).add(name)
        if search.origin is not None:  # found for the coordinator: tell it
            self._origins[name] = search.origin
            search.origin.send(self._reply(self._actions.LISTEN_ACCEPT, name))
            return
        self._tell_subscribers(name, has_provider=True)

    # -- subscription hooks --------------------------------------------------------------

    def _first_subscriber(self, name: str) -> None:
        if self.cluster is None:
            self._start_search(name)
        else:
            self.cluster.subscribed(name)

    def _last_subscriber(self, name: str) -> None:
        if self.cluster is None:
            self._on_last_subscriber(name)
        else:
            self.cluster.unsubscribed(name)

    def _mine(self, name: str) -> bool:
        """Whether this node runs the search for ``name``."""
        if self.cluster is None:
            return self.subscriptions.has_subscribers(name)
        return self.cluster.coordinates(name)

    def _names(self) -> list[str]:
        """The names this node may offer: subscribed here (cluster: or coordinated)."""
        names = list(self.subscriptions.names())
        if self.cluster is not None:
            names += [
                n for n in self.cluster.coordinated() if not self.subscriptions.has_subscribers(n)
            ]
        return names

    def matches(self, name: str) -> bool:
        """Whether a pattern listened to here matches ``name``."""
        return any(regex.search(name) for regex in self._patterns.values())

    def _start_search(self, name: str, first: _Offer | None = None) -> None:
        """Offer ``name`` to every matching listener in turn (``first`` first, if it is one)."""
        offers = [
            _Offer(conn, pattern)
            for pattern, regex in self._patterns.items()
            if regex.search(name)
            for conn in self._listeners[pattern]
        ]
        if self.cluster is not None:
            offers += [_Offer(node, pattern, True) for node, pattern in self.cluster.offers(name)]
        if not offers:
            return
        if self.shuffle:
            random.shuffle(offers)
        if first is not None:
            same = [o for o in offers if o.conn is first.conn and o.pattern == first.pattern]
            offers = same + [o for o in offers if o not in same]
        search = _Search(offers[0], offers[1:])
        self._searches[name] = search
        self._ask(name, search)

    def _on_last_subscriber(self, name: str) -> None:
        """Nobody (on a cluster: anywhere) subscribes to ``name`` any more."""
        search = self._searches.pop(name, None)
        if search is not None:
            # The listener being asked may accept before it hears anything else: tell it the
            # offer is void, so a provider never starts for a name nobody wants.
            if search.timer is not None:
                search.timer.cancel()
            self._send_offer(search.current, name, self._actions.SUBSCRIPTION_FOR_PATTERN_REMOVED)
            return
        provider = self._providers.get(name)
        if provider is not None:
            self._drop_provider(name)
            self._send_offer(provider, name, self._actions.SUBSCRIPTION_FOR_PATTERN_REMOVED)

    def _on_subscriber_added(self, name: str, conn: Connection) -> None:
        here = name in self._providers and name not in self._origins
        if here or (self.cluster is not None and self.cluster.provided_elsewhere(name)):
            conn.send(Message(self.topic, RecordAction.SUBSCRIPTION_HAS_PROVIDER, name=name))

    # -- the search ----------------------------------------------------------------------

    def _rematch(self) -> None:
        """Offer again every subscribed name that has neither a provider nor a search; then
        again in ``rematch_interval`` seconds, as long as anyone listens."""
        if not self._patterns and (self.cluster is None or not self.cluster.listeners_elsewhere()):
            self._rematch_timer = None
            return
        names = [
            name
            for name in self._names()
            if name not in self._providers and name not in self._searches
        ]
        self._rematch_names(names, 0)
        self._rematch_timer = asyncio.get_running_loop().call_later(
            self.rematch_interval, self._rematch
        )

    def _rematch_names(self, names: list[str], start: int) -> None:
        """Start a search for each of ``names`` still unprovided, ``SCAN_BYTES`` of names per
        loop pass (each is matched against every pattern)."""
        scanned = 0
        for i in range(start, len(names)):
            if scanned >= SCAN_BYTES:
                asyncio.get_running_loop().call_soon(self._rematch_names, names, i)
                return
            name = names[i]
            scanned += len(name)
            if name not in self._providers and name not in self._searches and self._mine(name):
                self._start_search(name)

    def _ask(self, name: str, search: _Search) -> None:
        offer = search.current
        self._arm(name, search)
        self._send_offer(offer, name, self._actions.SUBSCRIPTION_FOR_PATTERN_FOUND)

    def _arm(self, name: str, search: _Search) -> None:
        """The wait for the listener asked: ``timeout``; another node (which asks its own
        listeners, ``timeout`` each, echoing each move) gets twice that per listener."""
        if search.timer is not None:
            search.timer.cancel()
        wait = self.timeout * 2 if search.current.remote else self.timeout
        search.timer = asyncio.get_running_loop().call_later(wait, self._timed_out, name, search)

    def _timed_out(self, name: str, search: _Search) -> None:
        if self._searches.get(name) is not search:
            return
        search.current.conn.send(
            Message(self.topic, self._actions.LISTEN_RESPONSE_TIMEOUT, subscription=name)
        )
        self._offer_next(name, search)

    def _offer_next(self, name: str, search: _Search) -> None:
        """Ask the next listener still listening, or give up: the name stays unprovided (and
        a node searching for a coordinator tells it so)."""
        while search.remaining:
            offer = search.remaining.pop(0)
            if self._still_listening(offer):
                search.current = offer
                if search.origin is not None:  # moving on: the coordinator's wait restarts
                    search.origin.send(
                        self._reply(self._actions.SUBSCRIPTION_FOR_PATTERN_FOUND, name)
                    )
                self._ask(name, search)
                return
        del self._searches[name]
        if search.origin is not None:
            search.origin.send(self._reply(self._actions.LISTEN_REJECT, name))
        log.debug("no listener provides %s", name)

    def _still_listening(self, offer: _Offer) -> bool:
        if offer.remote:
            return self.cluster is not None and self.cluster.listening(offer.conn, offer.pattern)
        return offer.conn in self._listeners.get(offer.pattern, ())

    # -- listeners and providers going away ----------------------------------------------

    def _remove_listener(self, conn: Connection, pattern: str) -> None:
        listeners = self._listeners[pattern]
        del listeners[conn]
        if not listeners:
            del self._listeners[pattern]
            self._program_total -= self._patterns.pop(pattern).programsize
            if self.cluster is not None:
                self.cluster.listened(pattern, False)
        patterns = self._patterns_of[conn]
        patterns.discard(pattern)
        if not patterns:
            del self._patterns_of[conn]
        for name, search in list(self._searches.items()):
            current = search.current
            if current.conn is conn and current.pattern == pattern:
                if search.timer is not None:
                    search.timer.cancel()
                self._offer_next(name, search)
        for name in list(self._provided_by.get(conn, ())):
            if self._providers[name].pattern == pattern:
                self._provider_left(name)

    def _provider_left(self, name: str) -> None:
        """``name``'s provider went away: search again (or have the coordinator do it)."""
        self._drop_provider(name)
        origin = self._origins.pop(name, None)
        if origin is not None:
            origin.send(self._reply(self._actions.SUBSCRIPTION_FOR_PATTERN_REMOVED, name))
            return
        self._tell_subscribers(name, has_provider=False)
        if self._mine(name):
            self._start_search(name)

    def _drop_provider(self, name: str) -> None:
        offer = self._providers.pop(name)
        names = self._provided_by[offer.conn]
        names.discard(name)
        if not names:
            del self._provided_by[offer.conn]

    # -- other nodes of a cluster --------------------------------------------------------

    def coordinate(self, name: str) -> None:
        """This node now runs the search for ``name`` (the cluster made it the coordinator)."""
        if name not in self._providers and name not in self._searches:
            self._start_search(name)

    def vacated(self, name: str) -> None:
        """Nobody anywhere subscribes to ``name`` any more (this node coordinated it)."""
        if name in self._providers or name in self._searches:
            self._on_last_subscriber(name)

    def reask(self) -> None:
        """This node's bus subscribed again: answers from other nodes may have been lost.
        Each search waiting on another node asks it again (one searching already goes on,
        one whose listener provides accepts at once: no listener hears a second offer), and
        names coordinated here that nobody provides and nobody is asked about are searched
        again (a lost accept made this node give up and void it there)."""
        for name, search in list(self._searches.items()):
            if search.origin is None and search.current.remote:
                self._ask(name, search)
        if self.cluster is not None:
            names = [
                name
                for name in self.cluster.coordinated()
                if name not in self._providers and name not in self._searches
            ]
            self._rematch_names(names, 0)

    def node_returned(self, node: Peer, patterns: Iterable[tuple[str, re2._Regexp]]) -> None:
        """``node``'s bus subscribed again (it listens to ``patterns``): what this node sent
        it meanwhile is lost. Each search waiting on its answer asks it again, and the names
        nobody provides are offered to it as to a listener that just arrived."""
        for name, search in list(self._searches.items()):
            if search.origin is None and search.current.conn is node:
                self._ask(name, search)
        for pattern, regex in patterns:
            self.remote_listener(node, pattern, regex)

    def node_dropped(self, node: Peer) -> None:
        """``node`` dropped messages it sent (its bus queue was full; its searches here are
        asked again by ``node_returned``): each name it provides here is asked again (a
        dropped REMOVED: it accepts at once while its listener still provides); each name
        provided here for it is told again (a dropped REMOVED or LISTEN_RESPONSE_TIMEOUT: it
        answers REMOVED if it does not hold that provider)."""
        for name in list(self._provided_by.get(node, ())):
            offer = self._providers[name]
            if offer.remote and self._mine(name):
                self._drop_provider(name)
                self._start_search(name, first=offer)
        for name, origin in list(self._origins.items()):
            if origin is node:
                node.send(self._reply(self._actions.LISTEN_ACCEPT, name))

    def reconfirm(self) -> None:
        """Messages from other nodes may have been lost (the bus reconnected): ask each other
        node that provides a name coordinated here again. It accepts at once while its
        listener still provides (the listener hears nothing); else the search goes on."""
        for name, offer in list(self._providers.items()):
            if offer.remote and self._mine(name):
                self._drop_provider(name)
                self._start_search(name, first=offer)

    def reannounce(self) -> None:
        """Messages from coordinators may have been lost (the bus reconnected): tell each
        coordinator again which of its names a listener here provides. One that does not
        want it so any more answers REMOVED, which the listener then hears."""
        for name, origin in list(self._origins.items()):
            origin.send(self._reply(self._actions.LISTEN_ACCEPT, name))

    def remote_listener(self, node: Peer, pattern: str, regex: re2._Regexp) -> None:
        """``node`` listens to ``pattern`` now: offer it the names this node coordinates (or
        has subscribers of), as to a listener that just arrived here."""
        self._offer_subscribed(_Offer(node, pattern, True), regex, self._names(), 0)
        self._start_rematching()

    def node_gone(self, node: Peer) -> None:
        """``node`` died: it answers no offer and provides nothing any more; what it
        coordinated here (providers and searches for it) ends."""
        for name, search in list(self._searches.items()):
            if search.origin is node:
                self._void(name)
            elif search.current.conn is node:
                if search.timer is not None:
                    search.timer.cancel()
                self._offer_next(name, search)
        for name in list(self._provided_by.get(node, ())):
            self._provider_left(name)
        for name in [n for n, origin in self._origins.items() if origin is node]:
            self._void(name)

    def from_node(self, node: Peer, msg: Message) -> None:
        """A listen message from another node about ``msg.subscription``."""
        name = msg.subscription
        if name is None:
            return
        action = msg.action
        actions = self._actions
        if action == actions.SUBSCRIPTION_FOR_PATTERN_FOUND:
            search = self._searches.get(name)
            if search is not None and search.current.conn is node:  # it moved on: wait again
                self._arm(name, search)
            elif msg.name is not None:
                self._offer_here(node, msg.name, name)
        elif action in (actions.LISTEN_ACCEPT, actions.LISTEN_REJECT):
            search = self._searches.get(name)
            provider = self._providers.get(name)
            if search is not None and search.current.conn is node:
                self._answer(node, msg)
            elif provider is not None and provider.conn is node:
                pass  # it says again that it provides (``reannounce``): so it does
            elif action == actions.LISTEN_ACCEPT:  # too late, or not wanted: void it there
                node.send(self._reply(actions.SUBSCRIPTION_FOR_PATTERN_REMOVED, name))
        elif action == actions.SUBSCRIPTION_FOR_PATTERN_REMOVED:
            provider = self._providers.get(name)
            if provider is not None and provider.conn is node:  # its provider left
                self._provider_left(name)
            elif self._origins.get(name) is node or (
                name in self._searches and self._searches[name].origin is node
            ):
                self._void(name)
        elif action == actions.LISTEN_RESPONSE_TIMEOUT:
            search = self._searches.get(name)
            if search is not None and search.origin is node:
                self._searches.pop(name)
                if search.timer is not None:
                    search.timer.cancel()
                search.current.conn.send(
                    Message(self.topic, actions.LISTEN_RESPONSE_TIMEOUT, subscription=name)
                )
            elif self._origins.get(name) is node:  # its accept came too late there
                self._void(name)

    def _offer_here(self, node: Peer, pattern: str, name: str) -> None:
        """The coordinator ``node`` offers ``name`` to this node's listeners of ``pattern``."""
        if name in self._providers and not self._providers[name].remote:
            self._origins[name] = node  # provided here already (a new coordinator asks)
            node.send(self._reply(self._actions.LISTEN_ACCEPT, name))
            return
        search = self._searches.get(name)
        if search is not None and search.origin is not None:
            search.origin = node  # a new coordinator asks while this node searches
            return
        offers = [_Offer(conn, pattern) for conn in self._listeners.get(pattern, ())]
        if not offers or search is not None:
            node.send(self._reply(self._actions.LISTEN_REJECT, name))
            return
        if self.shuffle:
            random.shuffle(offers)
        search = _Search(offers[0], offers[1:], origin=node)
        self._searches[name] = search
        self._ask(name, search)

    def _void(self, name: str) -> None:
        """What this node did for another node's ``name`` is no longer wanted: the listener
        asked or providing hears SUBSCRIPTION_FOR_PATTERN_REMOVED."""
        removed = self._actions.SUBSCRIPTION_FOR_PATTERN_REMOVED
        search = self._searches.get(name)
        if search is not None and search.origin is not None:
            del self._searches[name]
            if search.timer is not None:
                search.timer.cancel()
            self._send_offer(search.current, name, removed)
        if self._origins.pop(name, None) is not None and name in self._providers:
            provider = self._providers[name]
            self._drop_provider(name)
            self._send_offer(provider, name, removed)

    def _reply(self, action: int, name: str) -> Message:
        return Message(self.topic, action, subscription=name)

    # -- outgoing ------------------------------------------------------------------------

    def _send_offer(self, offer: _Offer, name: str, action: int) -> None:
        """SUBSCRIPTION_FOR_PATTERN_FOUND / _REMOVED: ``name`` through ``offer``'s pattern."""
        offer.conn.send(Message(self.topic, action, name=offer.pattern, subscription=name))

    def _tell_subscribers(self, name: str, *, has_provider: bool) -> None:
        """Records only, as the reference: event subscribers are not told about providers
        (on a cluster: on every node)."""
        if self.topic != Topic.RECORD:
            return
        if self.cluster is not None:
            self.cluster.provided(name, has_provider)
        self.tell_subscribers(name, has_provider=has_provider)

    def tell_subscribers(self, name: str, *, has_provider: bool) -> None:
        """SUBSCRIPTION_HAS_(NO_)PROVIDER to this node's subscribers of record ``name``."""
        action = (
            RecordAction.SUBSCRIPTION_HAS_PROVIDER
            if has_provider
            else RecordAction.SUBSCRIPTION_HAS_NO_PROVIDER
        )
        self.subscriptions.send(name, encode(Message(self.topic, action, name=name)))
