"""How much each fuzz layer runs, and a count of the frames it fed.

``RECORDGATE_FUZZ_FRAMES`` (default 100,000) is the total over the three layers, split
``SHARES``; a long run by hand raises it. ``RECORDGATE_FUZZ_SEED`` picks the seed: unset, every
run draws the same examples (hypothesis derandomized, the live stream seeded with
``DEFAULT_SEED``), so CI cannot flake; a number explores other inputs, reproducibly; ``random``
picks one, and the summary line prints it.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, seed, settings

__all__ = ["FRAMES", "SEED", "count", "counted", "frames_for", "fuzz_settings"]

DEFAULT_SEED = 6  # issue 6
SHARES = {"decoder": 0.5, "session": 0.2, "live": 0.3}

FRAMES = int(os.environ.get("RECORDGATE_FUZZ_FRAMES", "100000"))
_seed_env = os.environ.get("RECORDGATE_FUZZ_SEED", "")
SEED: int | None = (
    None
    if not _seed_env
    else random.SystemRandom().randrange(2**32)
    if _seed_env == "random"
    else int(_seed_env)
)

counted: Counter[str] = Counter()
"""Frames fed so far, per layer; each test's report takes them (``conftest.py``) for the
session's summary line."""

F = TypeVar("F", bound=Callable[..., Any])


def count(layer: str, frames: int) -> None:
    counted[layer] += frames


def frames_for(layer: str) -> int:
    return max(1, int(FRAMES * SHARES[layer]))


def fuzz_settings(examples: int) -> Callable[[F], F]:
    """Hypothesis settings for a fuzz test: no database, no deadline, no flakes."""

    def decorate(test: F) -> F:
        configured = settings(
            max_examples=max(1, examples),
            deadline=None,
            database=None,
            derandomize=SEED is None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
            # A failure is reported as found: shrinking 40-frame sequences of 100 KB values
            # takes minutes, longer than the test's timeout; the blob reproduces it.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        )(test)
        return configured if SEED is None else seed(SEED)(configured)

    return decorate
