"""A Prometheus-style histogram: cumulative bucket counts, a sum and a count, cheap to observe."""

from __future__ import annotations

import bisect

__all__ = ["FLUSH_BUCKETS", "Histogram"]

FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds; a storage write of a batch takes about a millisecond to a few seconds."""


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = FLUSH_BUCKETS) -> None:
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count of observations <= le)`` per bucket, ending with ``+Inf``."""
        out, total = [], 0
        for bound, count in zip((*map(repr, self.buckets), "+Inf"), self._counts, strict=True):
            total += count
            out.append((bound, total))
        return out
