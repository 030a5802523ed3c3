"""Records: versioned JSON documents, read, written and synchronised to every subscriber.

``handler`` is the RECORD topic handler; ``lanes`` runs each record's operations one at a time
in arrival order; ``writes`` is the version rule and the snapshot and broadcast a write makes
(pure); ``paths`` the JSON path grammar of PATCH and ERASE (pure); ``messages`` builds the
messages more than one of them sends.
"""

from __future__ import annotations

from .handler import MAX_NAME_BYTES, RecordHandler

__all__ = ["MAX_NAME_BYTES", "RecordHandler"]
