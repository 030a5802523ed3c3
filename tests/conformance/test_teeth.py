"""The suite has teeth: each deliberately broken connector in ``broken.py`` fails the test
guarding the rule it breaks, with a message naming that rule."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conformance.runner import run_suite

BROKEN = "tests.conformance.broken:"

# broken connector -> (the suite modules to run, tests that must fail, text of the rule)
TRAPS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "FloatVersionsConnector": (
        ("test_versioning.py",),
        ("test_versioning.py::test_versions_are_exact_integers[2^53]",),
        "rule: versions are exact integers",
    ),
    "SameVersionAlwaysAppliedConnector": (
        ("test_versioning.py",),
        ("test_versioning.py::test_same_version_different_data_conflicts",),
        "rule: the same version with different data is a conflict",
    ),
    "LooseEqualityConnector": (
        ("test_versioning.py",),
        (
            "test_versioning.py::test_same_version_with_data_of_another_kind_conflicts[1 vs true]",
            "test_versioning.py::test_same_version_with_data_of_another_kind_conflicts[1 vs 1.0]",
        ),
        "rule: the same version with different data (data_equal) is a conflict",
    ),
    "TextEqualityConnector": (
        ("test_versioning.py",),
        (
            "test_versioning.py::test_same_version_same_data_is_an_idempotent_retry",
            "test_versioning.py::test_idempotent_retry_of_nested_data_in_another_key_order",
        ),
        "rule: the same version with equal data",
    ),
    "ConflictWithoutCurrentConnector": (
        ("test_versioning.py",),
        ("test_versioning.py::test_stale_put_is_refused_with_stored_snapshot",),
        "rule: Put of a lower version is a conflict carrying the stored snapshot",
    ),
    "UnconditionalDeleteConnector": (
        ("test_deletion.py", "test_versioning.py"),
        (
            "test_deletion.py::test_stale_delete_is_refused",
            "test_versioning.py::test_versions_are_exact_integers[2^31]",
        ),
        "rule: a Delete under a newer stored version is a conflict",
    ),
    "RacyConnector": (
        ("test_conflicts.py",),
        (
            "test_conflicts.py::test_concurrent_writers_one_winner",
            "test_conflicts.py::test_concurrent_batches_on_one_instance_one_winner",
        ),
        "rule: concurrent writers of one version",
    ),
    "SortedResultsConnector": (
        ("test_conflicts.py",),
        ("test_conflicts.py::test_results_follow_the_order_given",),
        "rule: write returns one result per operation, in the order given",
    ),
    "PartialWriteOnRejectConnector": (
        ("test_errors.py",),
        ("test_errors.py::test_rejected_batch_writes_nothing",),
        "rule: data that is not JSON is StorageRejected before anything of the batch is written",
    ),
    "RejectedAsUnavailableConnector": (
        ("test_errors.py",),
        ("test_errors.py::test_non_json_data_is_rejected[nan]",),
        "StorageUnavailable",
    ),
    "PoisonedAfterErrorConnector": (
        ("test_errors.py",),
        ("test_errors.py::test_errors_leave_the_connector_working",),
        "current transaction is aborted",
    ),
    "LenientJSONConnector": (
        ("test_errors.py",),
        (
            "test_errors.py::test_non_json_data_is_rejected[set]",
            "test_errors.py::test_non_json_data_is_rejected[decimal]",
        ),
        "DID NOT RAISE",
    ),
    "DoubleNumbersConnector": (
        ("test_roundtrip.py",),
        (
            "test_roundtrip.py::test_data_round_trips[integral floats]",
            "test_roundtrip.py::test_big_integers_exact_or_rejected[2^53+1]",
        ),
        "rule: integers beyond 2^53 round-trip exactly or are StorageRejected",
    ),
    "OperatorKeysDroppedConnector": (
        ("test_roundtrip.py",),
        (
            "test_roundtrip.py::test_data_round_trips[keys needing care]",
            "test_roundtrip.py::test_data_round_trips[nested operator-like keys]",
        ),
        "rule: JSON data round-trips exactly",
    ),
    "FalseNulDeclarationConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_u0000_is_held_unless_declared[in a key]",),
        "rule: a connector declaring NUL in cannot_hold refuses U+0000 (StorageRejected)",
    ),
    "FalseNulNameDeclarationConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_u0000_in_names_is_held_unless_declared",),
        "rule: a connector declaring NUL in cannot_hold refuses U+0000 in a name",
    ),
    "UndeclaredNulNameRefusalConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_u0000_in_names_is_held_unless_declared",),
        "rule: U+0000 in a name round-trips unless the connector declares NUL in cannot_hold",
    ),
    "CStringNamesConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_u0000_in_names_is_held_unless_declared",),
        "rule: U+0000 in a name round-trips unless the connector declares NUL in cannot_hold",
    ),
    "UndeclaredNulRefusalConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_u0000_is_held_unless_declared[in a string]",),
        "rule: U+0000 in data round-trips unless the connector declares NUL in cannot_hold",
    ),
    "TypeTagRefusalConnector": (
        ("test_roundtrip.py",),
        (
            "test_roundtrip.py::test_data_round_trips[database type tags]",
            "test_roundtrip.py::test_data_round_trips[a database type tag at the top]",
        ),
        "rule: JSON data is stored",
    ),
    "TypeTagsReadAsTypesConnector": (
        ("test_roundtrip.py",),
        (
            "test_roundtrip.py::test_data_round_trips[database type tags]",
            "test_roundtrip.py::test_data_round_trips[a database type tag at the top]",
        ),
        "rule: JSON data round-trips exactly",
    ),
    "MutatingConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_data_round_trips[empty object]",),
        "rule: the caller's data is never mutated",
    ),
    "SharedDataConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_returned_data_is_a_copy",),
        "test_returned_data_is_a_copy",
    ),
    "IterableOnceConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_get_many_takes_any_iterable_with_duplicates",),
        "rule: get_many takes any iterable of names",
    ),
    "StaleHeadConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_head_agrees_with_get",),
        "rule: head returns the version get returns",
    ),
    "CollatingConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_distinct_names_are_distinct_records",),
        "rule: distinct strings are distinct records",
    ),
    "TruncatingConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_long_name_500_bytes[4-byte]",),
        "rule: names of 500 bytes of UTF-8 work, never truncated",
    ),
    "PatternGetConnector": (
        ("test_roundtrip.py",),
        ("test_roundtrip.py::test_reads_match_the_exact_name",),
        "rule: get, get_many and head match the exact name",
    ),
    "RegexScanConnector": (
        ("test_scan.py",),
        ("test_scan.py::test_scan_wildcard_characters_are_literal",),
        "rule: no character of a scan prefix is a wildcard",
    ),
    "CollectionScanConnector": (
        ("test_scan.py",),
        ("test_scan.py::test_scan_prefix_is_of_the_name_not_the_collection",),
        "rule: scan matches a prefix of the name, whatever the collections",
    ),
    "Utf16OrderConnector": (
        ("test_scan.py",),
        ("test_scan.py::test_scan_in_name_order",),
        "rule: scan yields names in code-point order",
    ),
    "OffsetPagingConnector": (
        ("test_scan.py",),
        ("test_scan.py::test_scan_during_writes",),
        "rule: during writes a scan yields each name stored throughout exactly once",
    ),
    "InclusivePagingConnector": (
        ("test_scan.py",),
        (
            "test_scan.py::test_scan_page_boundaries[1]",
            "test_scan.py::test_scan_page_boundaries[2]",
        ),
        "rule: a scan yields each matching name once",
    ),
    "FirstPageOnlyConnector": (
        ("test_scan.py",),
        ("test_scan.py::test_scan_page_boundaries[3]", "test_scan.py::test_scan_many_pages"),
        "rule: pages continue after the last name yielded",
    ),
    "UncleanBeforeOpenConnector": (
        ("test_lifecycle.py",),
        ("test_lifecycle.py::test_calls_before_open_are_unavailable",),
        "rule: calls before open() raise StorageUnavailable",
    ),
    "NoReopenConnector": (
        ("test_lifecycle.py",),
        ("test_lifecycle.py::test_reopen_after_close",),
        "StorageUnavailable: memory connector is not open",
    ),
    "SingleConnectionConnector": (
        ("test_lifecycle.py",),
        ("test_lifecycle.py::test_one_instance_serves_concurrent_calls",),
        "rule: one instance accepts concurrent calls",
    ),
    "FrozenTimestampConnector": (
        ("test_layout.py",),
        ("test_layout.py::test_update_moves_version_and_timestamp",),
        "rule: updated_at moves on every applied write",
    ),
    "SelfCheckingRawReaderConnector": (
        ("test_layout.py",),
        ("test_layout.py::test_raw_reader_reads_without_the_connector",),
        "StorageUnavailable: memory connector is not open",
    ),
    "TouchOnRefusalConnector": (
        ("test_layout.py",),
        ("test_layout.py::test_refused_write_leaves_layout_alone",),
        "rule: a refused write or an idempotent retry leaves the stored item alone",
    ),
    "IgnoredFencesConnector": (
        ("test_fencing.py",),
        (
            "test_fencing.py::test_lower_fence_refused_higher_applies",
            "test_fencing.py::test_stale_writes_after_recreate_leave_the_new_record",
        ),
        "rule: fenced: a put with a fence lower than the stored one is refused",
    ),
    "FloatFencesConnector": (
        ("test_fencing.py",),
        ("test_fencing.py::test_largest_fence_exact",),
        "rule: fenced: fences are exact integers up to 2**63-1",
    ),
    "FenceDroppedOnDeleteConnector": (
        ("test_fencing.py",),
        ("test_fencing.py::test_stale_put_after_delete_refused",),
        "rule: fenced: the fence is kept when the record is deleted",
    ),
    "ConflictRaisesFenceConnector": (
        ("test_fencing.py",),
        ("test_fencing.py::test_conflict_leaves_the_fence",),
        "rule: fenced: a CONFLICT changes nothing, the fence included",
    ),
    "IdempotentBeforeFenceConnector": (
        ("test_fencing.py",),
        ("test_fencing.py::test_idempotent_retry_with_a_lower_fence_refused",),
        "rule: fenced: a lower fence is refused, also for a retry of what is stored",
    ),
    "FenceOnlyWhereFencedConnector": (
        ("test_fencing.py",),
        ("test_fencing.py::test_fences_on_records_written_unfenced",),
        "rule: fenced: a fenced put over a record without a fence stores its fence",
    ),
    "SharedFencesConnector": (
        ("test_fencing.py",),
        ("test_fencing.py::test_fences_are_per_name",),
        "rule: fenced: each name has its own fence",
    ),
    "RacyFencesConnector": (
        ("test_fencing.py",),
        ("test_fencing.py::test_concurrent_fenced_writers",),
        "rule: fenced: the fence check, version check and write are one atomic operation",
    ),
    "TombstonePagesConnector": (
        ("test_fencing.py",),
        ("test_fencing.py::test_tombstones_skipped_across_scan_pages",),
        "rule: fenced: tombstones are invisible as records (scan, across pages of 3)",
    ),
}


@pytest.mark.parametrize("broken", TRAPS, ids=TRAPS)
def test_broken_connector_fails_the_rule_it_breaks(broken: str) -> None:
    modules, must_fail, rule = TRAPS[broken]
    run = run_suite(*(f"conformance/{m}" for m in modules), "--connector", BROKEN + broken)
    assert run.returncode == 1, run.output[-4000:]
    failed = {test.removeprefix("conformance/") for test in run.failed_tests}
    assert set(must_fail) <= failed, f"{broken}: expected {must_fail} among {sorted(failed)}"
    assert rule in run.output, f"{broken}: no {rule!r} in\n{run.output[-4000:]}"


def test_overwriting_connector_fails_the_suite() -> None:
    run = run_suite("conformance/", "--connector", BROKEN + "OverwritingConnector")
    assert run.returncode == 1, run.output[-4000:]
    failed = run.failed_tests
    expected = {
        "conformance/test_versioning.py::test_stale_put_is_refused_with_stored_snapshot",
        "conformance/test_versioning.py::test_same_version_different_data_conflicts",
        "conformance/test_conflicts.py::test_concurrent_writers_one_winner",
        "conformance/test_conflicts.py::test_batch_with_mixed_outcomes",
    }
    assert expected <= set(failed), failed


def test_network_connector_that_hangs_on_a_silent_server() -> None:
    """Waits for a greeting without a timeout, and lets socket errors escape: both caught, and
    the run ends on its own (no pytest-timeout) long before anything would hang it."""
    run = run_suite(
        "conformance/test_errors.py", "-k", "refused or silent", "-p", "no:timeout",
        "--connector", BROKEN + "HangingNetworkConnector", timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.output[-4000:]
    assert set(run.failed_tests) == {
        "conformance/test_errors.py::test_refused_connection_fails_fast",
        "conformance/test_errors.py::test_silent_server_fails_in_time",
    }, run.output[-4000:]
    assert "rule: a server that accepts connections and never answers" in run.output
    assert "did not return within 5s" in run.output
    assert "raised ConnectionRefusedError" in run.output


def test_a_hanging_call_fails_its_test_instead_of_the_run() -> None:
    run = run_suite(
        "conformance/test_roundtrip.py", "-k", "test_missing_record or test_name_without_slash",
        "-p", "no:timeout", "--connector-call-timeout", "2",
        "--connector", BROKEN + "HangingGetConnector", timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.output[-4000:]
    assert run.failed_tests == ["conformance/test_roundtrip.py::test_missing_record"]
    assert run.count("passed") == 1
    assert "rule: no call outlives the connector's timeout: get(" in run.output
    assert "did not return within 2s" in run.output


def test_a_namespace_without_drop_is_a_usage_error() -> None:
    run = run_suite("conformance/test_versioning.py", "--connector", BROKEN + "NoDropConnector")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.output[-2000:]
    assert "declares namespace_option 'namespace' but has no drop()" in run.output


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A line-echo server in a process of its own (the suite's proxy stands in front of it)."""
    code = (
        "import asyncio\n"
        "async def echo(r, w):\n"
        "    while line := await r.readline():\n"
        "        w.write(line)\n"
        "async def main():\n"
        "    server = await asyncio.start_server(echo, '127.0.0.1', 0)\n"
        "    print(server.sockets[0].getsockname()[1], flush=True)\n"
        "    await server.serve_forever()\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("connector", "fails"),
    [("PingingConnector", False), ("UnboundedAfterOpenConnector", True)],
)
def test_a_connector_unbounded_once_open(echo_server: int, connector: str, fails: bool) -> None:
    """The proxy test fails a connector that bounds only its connecting, and passes the same
    connector with every answer bounded (so it is a test a correct connector can pass)."""
    run = run_suite(
        "conformance/test_errors.py", "-k", "stops_answering", "-p", "no:timeout",
        "--connector", BROKEN + connector, "--connector-url", f"ping://127.0.0.1:{echo_server}",
        timeout=180,
    )  # fmt: skip
    if not fails:
        assert run.returncode == 0 and run.count("passed") == 1, run.output[-4000:]
        return
    assert run.returncode == 1, run.output[-4000:]
    assert run.failed_tests == [
        "conformance/test_errors.py::test_server_that_stops_answering_mid_session"
    ]
    assert "rule: a call on a server that stops answering fails within" in run.output
    assert "did not return within 5s" in run.output
