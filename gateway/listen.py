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
from dataclasses import dataclass

import re2

from .config import LimitsConfig
from .connection import Connection
from .exceptions import InvalidData, LimitExceeded
from .limits import LimitTrips, ThrottledLog
from .protocol import EventAction, Message, RecordAction, Topic, encode
from .subscriptions import SubscriptionRegistry, duplicate

__all__ = ["MAX_PATTERN_LENGTH", "ListenRegistry", "compile_pattern"]

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


@dataclass(slots=True, eq=False)
class _Offer:
    """One listener and the pattern through which it matched a name."""

    conn: Connection
    pattern: str


@dataclass(slots=True, eq=False)
class _Search:
    """A name being offered: to ``current`` now, then to ``remaining`` in order."""

    current: _Offer
    remaining: list[_Offer]
    timer: asyncio.TimerHandle | None = None


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
        self._provided_by: dict[Connection, set[str]] = {}
        self._searches: dict[str, _Search] = {}
        subscriptions.on_first = self._start_search
        subscriptions.on_last = self._on_last_subscriber
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
        self._patterns[pattern] = regex
        self._patterns_of.setdefault(conn, set()).add(pattern)
        conn.send(msg.ack())
        self._offer_subscribed(_Offer(conn, pattern), regex, list(self.subscriptions.names()), 0)
        if self._rematch_timer is None and self.rematch_interval > 0:
            self._rematch_timer = asyncio.get_running_loop().call_later(
                self.rematch_interval, self._rematch
            )

    def _offer_subscribed(
        self, offer: _Offer, regex: re2._Regexp, names: list[str], start: int
    ) -> None:
        """Offer ``names`` (subscribed when ``offer``'s listener arrived) that it matches and
        nobody provides; a search in flight just gains it as a last resort. At most
        ``SCAN_BYTES`` of names are matched per loop pass; the rest in later passes."""
        if offer.conn not in self._listeners.get(offer.pattern, ()):
            return  # unlistened (or gone) meanwhile
        scanned = 0
        for i in range(start, len(names)):
            if scanned >= SCAN_BYTES:
                loop = asyncio.get_running_loop()
                loop.call_soon(self._offer_subscribed, offer, regex, names, i)
                return
            name = names[i]
            scanned += len(name)
            if (
                name in self._providers
                or not self.subscriptions.has_subscribers(name)
                or not regex.search(name)
            ):
                continue
            search = self._searches.get(name)
            if search is None:
                self._start_search(name)
            elif not any(
                o.conn is offer.conn and o.pattern == offer.pattern
                for o in (search.current, *search.remaining)
            ):  # a search started between two passes holds it already
                search.remaining.append(_Offer(offer.conn, offer.pattern))

    def _unlisten(self, conn: Connection, msg: Message) -> None:
        # As the reference does, UNLISTEN of a pattern not listened to is silently ignored.
        if msg.name is None or msg.name not in self._patterns_of.get(conn, ()):
            return
        conn.send(msg.ack())
        self._remove_listener(conn, msg.name)

    def _answer(self, conn: Connection, msg: Message) -> None:
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
        self._tell_subscribers(name, has_provider=True)

    # -- subscription hooks --------------------------------------------------------------

    def _start_search(self, name: str) -> None:
        offers = [
            _Offer(conn, pattern)
            for pattern, regex in self._patterns.items()
            if regex.search(name)
            for conn in self._listeners[pattern]
        ]
        if not offers:
            return
        if self.shuffle:
            random.shuffle(offers)
        search = _Search(offers[0], offers[1:])
        self._searches[name] = search
        self._ask(name, search)

    def _on_last_subscriber(self, name: str) -> None:
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
        if name in self._providers:
            conn.send(Message(self.topic, RecordAction.SUBSCRIPTION_HAS_PROVIDER, name=name))

    # -- the search ----------------------------------------------------------------------

    def _rematch(self) -> None:
        """Offer again every subscribed name that has neither a provider nor a search; then
        again in ``rematch_interval`` seconds, as long as anyone listens."""
        if not self._patterns:
            self._rematch_timer = None
            return
        names = [
            name
            for name in self.subscriptions.names()
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
            if (
                name not in self._providers
                and name not in self._searches
                and self.subscriptions.has_subscribers(name)
            ):
                self._start_search(name)

    def _ask(self, name: str, search: _Search) -> None:
        offer = search.current
        search.timer = asyncio.get_running_loop().call_later(
            self.timeout, self._timed_out, name, search
        )
        self._send_offer(offer, name, self._actions.SUBSCRIPTION_FOR_PATTERN_FOUND)

    def _timed_out(self, name: str, search: _Search) -> None:
        if self._searches.get(name) is not search:
            return
        search.current.conn.send(
            Message(self.topic, self._actions.LISTEN_RESPONSE_TIMEOUT, subscription=name)
        )
        self._offer_next(name, search)

    def _offer_next(self, name: str, search: _Search) -> None:
        """Ask the next listener still listening, or give up: the name stays unprovided."""
        while search.remaining:
            offer = search.remaining.pop(0)
            if offer.conn in self._listeners.get(offer.pattern, ()):
                search.current = offer
                self._ask(name, search)
                return
        del self._searches[name]
        log.debug("no listener provides %s", name)

    # -- listeners and providers going away ----------------------------------------------

    def _remove_listener(self, conn: Connection, pattern: str) -> None:
        listeners = self._listeners[pattern]
        del listeners[conn]
        if not listeners:
            del self._listeners[pattern]
            self._program_total -= self._patterns.pop(pattern).programsize
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
                self._drop_provider(name)
                self._tell_subscribers(name, has_provider=False)
                if self.subscriptions.has_subscribers(name):
                    self._start_search(name)

    def _drop_provider(self, name: str) -> None:
        offer = self._providers.pop(name)
        names = self._provided_by[offer.conn]
        names.discard(name)
        if not names:
            del self._provided_by[offer.conn]

    # -- outgoing ------------------------------------------------------------------------

    def _send_offer(self, offer: _Offer, name: str, action: int) -> None:
        """SUBSCRIPTION_FOR_PATTERN_FOUND / _REMOVED: ``name`` through ``offer``'s pattern."""
        offer.conn.send(Message(self.topic, action, name=offer.pattern, subscription=name))

    def _tell_subscribers(self, name: str, *, has_provider: bool) -> None:
        """Records only, as the reference: event subscribers are not told about providers."""
        if self.topic != Topic.RECORD:
            return
        action = (
            RecordAction.SUBSCRIPTION_HAS_PROVIDER
            if has_provider
            else RecordAction.SUBSCRIPTION_HAS_NO_PROVIDER
        )
        self.subscriptions.send(name, encode(Message(self.topic, action, name=name)))
