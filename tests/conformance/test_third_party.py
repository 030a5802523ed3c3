"""A connector outside this repository passes the suite, run from another directory.

The run uses its own empty pytest config, so nothing of this repo's settings (asyncio auto
mode, markers) helps: the plugin has to stand on its own, as for a third-party author.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.runner import REPO, run_suite

EXAMPLE = REPO / "examples" / "third_party_connector"


@pytest.mark.timeout(600)  # every write rewrites and fsyncs the whole file
def test_example_connector_passes_the_suite(tmp_path: Path) -> None:
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")
    run = run_suite(
        "-c", str(ini), "--rootdir", str(tmp_path), "--pyargs", "conformance",
        "--connector=jsonfile_connector:JSONFileConnector",
        f"--connector-url=jsonfile://{tmp_path / 'store.json'}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(EXAMPLE)},
    )  # fmt: skip
    assert run.returncode == 0, run.output[-6000:]
    assert run.count("passed") > 60
    assert (tmp_path / "store.json").exists()
