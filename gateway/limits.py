"""Counting the limits that trip, for ``/metrics``, and throttling the log lines clients cause.

Every limit in ``config`` (``server.max_send_buffer``, ``limits.max_name_length``, ...) is
counted here under its configuration key whenever it refuses something, so an operator sees in
``recordgate_limit_trips_total{limit="..."}`` which one clients run into.

A log line that a client can cause (a bad pattern, a refused write, a failed load) goes through
a :class:`ThrottledLog`: at most ``burst`` lines per ``interval`` seconds for each message
template, the rest counted and reported by the next line that gets through, so no client can
fill the disk with the server's log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["LimitTrips", "ThrottledLog"]


class LimitTrips:
    """How often each limit refused something, by its configuration key."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def trip(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def __getitem__(self, key: str) -> int:
        return self.counts.get(key, 0)


class ThrottledLog:
    """A logger's lines, at most ``burst`` per ``interval`` seconds per message template."""

    def __init__(self, logger: logging.Logger, *, burst: int = 5, interval: float = 10.0) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self._windows: dict[str, list[float | int]] = {}  # template -> [start, sent, suppressed]

    def log(
        self, level: int, msg: str, *args: Any, exc_info: bool | BaseException | None = None
    ) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = time.monotonic()
        window = self._windows.get(msg)
        if window is None or now - window[0] >= self.interval:
            suppressed = 0 if window is None else int(window[2])
            if window is None and len(self._windows) >= 1024:  # templates are few; stay bounded
                self._windows.clear()
            window = self._windows[msg] = [now, 0, 0]
        else:
            suppressed = 0
        if window[1] >= self.burst:
            window[2] += 1
            return
        window[1] += 1
        if suppressed:
            msg += f" ({suppressed} similar lines suppressed)"
        self.logger.log(level, msg, *args, exc_info=exc_info)

    def debug(self, msg: str, *args: Any) -> None:
        self.log(logging.DEBUG, msg, *args)

    def info(self, msg: str, *args: Any) -> None:
        self.log(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self.log(logging.WARNING, msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self.log(logging.ERROR, msg, *args)

    def exception(self, msg: str, *args: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=True)
