"""The history check against one ``recordgate start`` without a cluster: what a cluster must
match. Python and official JS clients write (explicit versions, so they conflict, and forced)
and subscribe at once; PostgreSQL is read directly at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.history.run import Size, history_run, started

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

CI_SIZE = Size(records=4, subscribers=6, writers=4, forcers=2, js_subscribers=1, js_writers=2)


async def test_a_single_node_keeps_every_rule(node: str, tmp_path: Path) -> None:
    with started(tmp_path, 0) as nodes:
        outcome = await history_run(nodes, CI_SIZE, node_bin=node)
    print(outcome.report())
    assert outcome.violations == [], outcome.report()
    counts = outcome.counts
    # the workload did what it claims: many acknowledged writes, real conflicts, every client
    assert counts["acked"] > 100 and counts["refused"] > 0, counts
    assert counts["clients"] == 6 + 4 + 2 + 1 + 2 + 1, counts  # + one final reader
    js = {w.client for w in outcome.history.writes if w.client.startswith("js")}
    assert len(js) == 2 and outcome.js["behind"] == [], outcome.js
