"""Progress of a long command: a bar on a terminal, a log line now and then elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from typing import IO

__all__ = ["Progress"]

log = logging.getLogger("recordgate")

BAR_WIDTH = 30


class Progress:
    """Call :meth:`update` with the count done so far (as often as you like: output is
    throttled), then :meth:`finish`. ``total`` may be unknown (``None``)."""

    def __init__(
        self,
        what: str,
        total: int | None,
        *,
        stream: IO[str] | None = None,
        log_every: float = 5.0,
    ) -> None:
        self.what = what
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.log_every = log_every
        self.started = time.monotonic()
        self._last = 0.0
        self._done = 0

    def update(self, done: int) -> None:
        self._done = done
        now = time.monotonic()
        if now - self._last < (0.1 if self.tty else self.log_every):
            return
        self._last = now
        self._show(now)

    def finish(self) -> None:
        self._show(time.monotonic())
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self._done / elapsed
        total = self.total
        if total:
            share = min(1.0, self._done / total)
            eta = (total - self._done) / rate if rate > 0 else float("inf")
            counts = f"{self._done}/{total} records"
            tail = f"{rate:,.0f}/s, ETA {_duration(eta)}"
        else:
            share, counts, tail = 0.0, f"{self._done} records", f"{rate:,.0f}/s"
        if self.tty:
            bar = "#" * int(share * BAR_WIDTH)
            shown = f"[{bar:<{BAR_WIDTH}}] " if total else ""
            self.stream.write(f"\r{self.what}: {shown}{counts} ({tail})\033[K")
            self.stream.flush()
        else:
            log.info("%s: %s (%s)", self.what, counts, tail)


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
