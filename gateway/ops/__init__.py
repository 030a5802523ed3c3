"""Operator commands behind ``recordgate migrate | export | import | check``.

Each works on storage connectors directly (never through a running server): ``copy`` moves
snapshots into a connector with conditional puts, ``jsonl`` reads and writes the export format,
``progress`` reports on a terminal or in log lines, ``check`` validates a deployment's config.
"""

from .copy import CopySummary, copy_records
from .jsonl import read_snapshots, write_snapshots

__all__ = ["CopySummary", "copy_records", "read_snapshots", "write_snapshots"]
