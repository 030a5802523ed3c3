"""Which event loop the suite's ``recordgate start`` processes run on.

``RECORDGATE_TEST_EVENT_LOOP`` unset: each process runs on ``server.event_loop``'s default (or
the loop its test configures), and the in-process tests on pytest-asyncio's standard loop.
Set to ``asyncio`` or ``uvloop``: every process a harness starts gets ``--event-loop`` that
loop (``start_args()``), which overrides its config, and the in-process tests run on that loop
too (``tests/conftest.py``). ``.ci/run`` uses this to run the server-process tests once more
on the loop the default run did not use. A new harness that starts ``recordgate start`` adds
``start_args()``, and its tests' path goes into that CI step.
"""

from __future__ import annotations

import os

__all__ = ["pinned", "start_args"]

_LOOPS = ("asyncio", "uvloop")


def pinned() -> str | None:
    """The loop every server process is started on, or None for each one's own choice."""
    choice = os.environ.get("RECORDGATE_TEST_EVENT_LOOP") or None
    if choice is not None and choice not in _LOOPS:
        raise ValueError(f"RECORDGATE_TEST_EVENT_LOOP must be one of {_LOOPS}, not {choice!r}")
    return choice


def start_args() -> list[str]:
    """Arguments to add to a ``recordgate start`` command line: the pinned loop, if any."""
    choice = pinned()
    return [] if choice is None else ["--event-loop", choice]
