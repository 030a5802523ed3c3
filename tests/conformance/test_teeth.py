"""The suite has teeth: a connector that overwrites regardless of version fails it."""

from __future__ import annotations

from tests.conformance.runner import run_suite


def test_overwriting_connector_fails_the_suite() -> None:
    run = run_suite("conformance/", "--connector", "tests.conformance.broken:OverwritingConnector")
    assert run.returncode == 1, run.output[-4000:]
    failed = run.failed_tests
    failed_modules = {test.split("::")[0].rsplit("/", 1)[-1] for test in failed}
    assert {"test_versioning.py", "test_conflicts.py"} <= failed_modules, failed
    expected = {
        "conformance/test_versioning.py::test_stale_put_is_refused_with_stored_snapshot",
        "conformance/test_versioning.py::test_same_version_different_data_conflicts",
        "conformance/test_conflicts.py::test_concurrent_writers_one_winner",
        "conformance/test_conflicts.py::test_batch_with_mixed_outcomes",
    }
    assert expected <= set(failed), failed
