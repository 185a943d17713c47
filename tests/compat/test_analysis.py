"""Kitaru 0.21's analysis API (KITARU_CONTRACT.md §4-5) on SQLite and PostgreSQL.

``kitaru.diff``/``diff_matrix``/``diff_cohort`` over real replays with overrides,
``client.executions.statistics`` over real executions, ``kitaru.cohort``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import kitaru
from kitaru import (
    KitaruBackendError,
    KitaruClient,
    KitaruFeatureNotAvailableError,
    KitaruUsageError,
    checkpoint,
    flow,
)

# --- flows ---------------------------------------------------------------------------------


@checkpoint
def fetch(x: int) -> int:
    if x < 0:
        raise ValueError(f"cannot fetch {x}")
    return x * 2


@checkpoint
def transform(value: int) -> int:
    if value > 1000:
        raise ValueError(f"too large: {value}")
    return value + 1


@checkpoint
def finish(value: int) -> str:
    kitaru.save("report", {"value": value}, type="context")
    return f"result {value}"


@flow
def pipeline(x: int, team: str = "core") -> str:
    kitaru.log(team=team, score=x * 10)
    return finish(transform(fetch(x)))


@flow
def other(x: int) -> int:
    return fetch(x)


def _run(x: int, team: str = "core") -> str:
    handle = pipeline.run(x, team=team)
    handle.wait(timeout=60)
    return handle.exec_id


def _replay(source: str, **kwargs: Any) -> str:
    submission = KitaruClient().executions.replay(source, **kwargs)
    (row,) = submission.results
    return str(row.replay_exec_id)


# --- diff ------------------------------------------------------------------------------------


def test_diff_of_all_replays_aligns_calls_and_compares_hashes(any_store: str) -> None:
    source = _run(1)  # fetch 2, transform 3, finish "result 3"
    same = _replay(source, at="transform")
    changed = _replay(source, at="transform", checkpoint_overrides={"transform": {"output": 50}})

    result = kitaru.diff(source)
    assert isinstance(result, kitaru.ExecutionDiff)
    assert result.original_exec_id == source
    assert [replay_id for replay_id, _ in result.compared] == [same, changed]
    assert result.warnings == []
    assert result.urls == []  # a store read directly: no server, no dashboard to link to

    by_replay = dict(result.compared)
    unchanged = by_replay[same]
    assert [d.name for d in unchanged] == ["fetch", "transform", "finish"]
    for entry in unchanged:
        assert isinstance(entry, kitaru.CheckpointDiff)
        assert entry.original_call_id == entry.replay_call_id == entry.name
        assert entry.status_match is True
        orig_hash, replay_hash = entry.artifact_hashes["output"]
        assert orig_hash == replay_hash
        assert len(orig_hash or "") == 64
        assert entry.token_delta is None
        assert entry.cost_delta_usd is None
    # The fetch call was reused (its body did not run): no duration change to speak of,
    # but it is a number; the live calls' deltas are numbers too.
    assert all(isinstance(d.duration_delta_ms, float) for d in unchanged)
    assert (
        unchanged[2].artifact_hashes["saved:report"][0]
        == (unchanged[2].artifact_hashes["saved:report"][1])
    )

    overridden = {d.name: d for d in by_replay[changed]}
    fetch_hashes = overridden["fetch"].artifact_hashes["output"]
    assert fetch_hashes[0] == fetch_hashes[1]
    for name in ("transform", "finish"):
        before, after = overridden[name].artifact_hashes["output"]
        assert before is not None, name
        assert after is not None, name
        assert before != after, name
    before, after = overridden["finish"].artifact_hashes["saved:report"]
    assert before != after
    assert all(d.status_match for d in overridden.values())


def test_diff_of_a_failed_replay_shows_the_status_change_and_the_missing_call(
    any_store: str,
) -> None:
    source = _run(1)
    submission = KitaruClient().executions.replay(
        source,
        at="transform",
        checkpoint_overrides={"transform": {"input": {"value": 5000}}},
        on_error="collect",
    )
    (row,) = submission.results
    assert row.status == "failed"

    result = kitaru.diff(source, row.replay_exec_id)
    ((replay_id, diffs),) = result.compared
    assert replay_id == row.replay_exec_id
    by_name = {d.name: d for d in diffs}
    assert [d.name for d in diffs] == ["fetch", "transform", "finish"]
    assert by_name["fetch"].status_match is True
    assert by_name["transform"].status_match is False
    assert by_name["transform"].replay_status == "failed"
    assert by_name["transform"].artifact_hashes["output"][1] is None
    missing = by_name["finish"]
    assert missing.replay_call_id is None
    assert missing.original_call_id == "finish"
    assert missing.status_match is False
    assert missing.duration_delta_ms is None

    data = result.to_dict()
    assert list(data) == ["original_exec_id", "compared", "urls", "warnings"]
    entry = data["compared"][0]["checkpoints"][0]
    assert set(entry["artifact_hashes"]["output"]) == {"original", "replay"}


def test_diff_warns_about_unrelated_executions_and_missing_replays(any_store: str) -> None:
    first, second = _run(1), _run(2)
    result = kitaru.diff(first, second)
    assert any(f"{second} is not a replay of {first}" in w for w in result.warnings)
    ((_, diffs),) = result.compared
    fetched = next(d for d in diffs if d.name == "fetch")
    assert fetched.artifact_hashes["output"][0] != fetched.artifact_hashes["output"][1]

    lonely = kitaru.diff(first)
    assert lonely.compared == []
    assert any("has no replays" in w for w in lonely.warnings)

    with pytest.raises(KitaruBackendError):
        kitaru.diff("00000000-0000-0000-0000-000000000000")
    with pytest.raises(KitaruUsageError):
        kitaru.diff_matrix(first)  # one string, not a list


def test_diff_matrix_and_diff_cohort(any_store: str) -> None:
    a, b, c = _run(1), _run(2), _run(3)
    matrix = kitaru.diff_matrix([a, b, c])
    assert isinstance(matrix, kitaru.CohortDiff)
    assert [row.original_exec_id for row in matrix.rows] == [a, b, c]
    assert [[rid for rid, _ in row.compared] for row in matrix.rows] == [[b, c], [a, c], [a, b]]
    assert matrix.to_dict()["rows"][0]["original_exec_id"] == a

    cohort = kitaru.cohort(flow="pipeline", at="transform", order_by="started_at").resolve()
    assert list(cohort) == [a, b, c]
    submission = KitaruClient().executions.replay(cohort, at="finish", wait=True)
    assert submission.summary.completed == 3
    replays = {r.original_exec_id: r.replay_exec_id for r in submission.results}
    rows = kitaru.diff_cohort(cohort).rows
    assert [row.original_exec_id for row in rows] == [a, b, c]
    for row in rows:
        ((replay_id, diffs),) = row.compared
        assert replay_id == replays[row.original_exec_id]
        assert all(d.artifact_hashes["output"][0] == d.artifact_hashes["output"][1] for d in diffs)


# --- statistics ------------------------------------------------------------------------------


def _failed_run() -> str:
    handle = pipeline.run(-1, team="edge")
    with pytest.raises(kitaru.KitaruExecutionError):
        handle.wait(timeout=60)
    return handle.exec_id


def test_statistics_groupings_and_metrics(any_store: str) -> None:
    _run(1), _run(2, team="ml"), _run(3)
    failed = _failed_run()
    client = KitaruClient()

    stats = client.executions.statistics(
        group_by=["status"],
        metrics=[
            "steps:step_count:sum",
            "avg_steps:step_count:avg",
            "outputs:output_artifact_count:sum",
            "duration:duration:max",
            "best:metadata:score:max",
            {"name": "low", "source": "metadata", "aggregation": "min", "metadata_key": "score"},
        ],
    )
    assert isinstance(stats, kitaru.ExecutionStatistics)
    assert stats.truncated is False
    assert [(g.keys, g.execution_count) for g in stats.groups] == [
        ({"status": "completed"}, 3),
        ({"status": "failed"}, 1),
    ]
    done, bad = stats.groups
    assert done.metrics["steps"] == 9.0  # fetch, transform, finish in each
    assert done.metrics["avg_steps"] == 3.0
    assert done.metrics["outputs"] == 12.0  # 3 outputs + 1 saved report each
    assert done.metrics["best"] == 30.0
    assert done.metrics["low"] == 10.0
    assert done.metrics["duration"] is not None
    assert done.metrics["duration"] >= 0
    assert bad.metrics["steps"] == 1.0
    assert bad.metrics["outputs"] == 0.0
    assert bad.metrics["best"] == -10.0

    by_team = client.executions.statistics(group_by=["metadata:team", "flow"])
    assert [(g.keys["team"], g.execution_count) for g in by_team.groups] == [
        ("core", 2),
        ("edge", 1),
        ("ml", 1),
    ]
    assert {g.keys["flow_id"] for g in by_team.groups} == {"tests.compat.test_analysis:pipeline"}
    # A grouping may also be given as its fields (what a connected client sends).
    as_fields = client.executions.statistics(
        group_by=[{"dimension": "metadata", "metadata_key": "team"}, {"dimension": "flow"}]
    )
    assert as_fields == by_team
    with pytest.raises(KitaruUsageError, match="a mapping takes dimension"):
        client.executions.statistics(group_by=[{"dimension": "flow", "colour": "red"}])

    today = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    by_day = client.executions.statistics(group_by=["time:day", "stack"])
    # All ran just now: one day (two if the runs straddled midnight UTC).
    days = {today.isoformat(), (today - timedelta(days=1)).isoformat()}
    assert {g.keys["day"] for g in by_day.groups} <= days
    assert {g.keys["stack_id"] for g in by_day.groups} == {"local"}
    assert sum(g.execution_count for g in by_day.groups) == 4

    only_failed = client.executions.statistics(status="failed", flow="pipeline")
    assert [(g.keys, g.execution_count) for g in only_failed.groups] == [({}, 1)]
    assert client.executions.statistics(stack="elsewhere").groups == []
    assert client.executions.statistics(flow="other").groups == []
    assert failed


def test_statistics_tags_cached_steps_and_truncation(any_store: str) -> None:
    source = _run(1)
    _run(2)
    tagged = _replay(source, at="finish", tag="exp-1")
    client = KitaruClient()

    by_tag = client.executions.statistics(
        group_by=["tag"], metrics=["reused:cached_step_count:sum"]
    )
    assert [(g.keys, g.execution_count) for g in by_tag.groups] == [
        ({"tag": None}, 2),
        ({"tag": "exp-1"}, 1),
    ]
    assert by_tag.groups[1].metrics["reused"] == 2.0  # fetch and transform reused
    assert by_tag.groups[0].metrics["reused"] == 0.0

    only_tagged = client.executions.statistics(tags=["exp-1"], metrics=["n:step_count:sum"])
    assert [(g.execution_count, g.metrics["n"]) for g in only_tagged.groups] == [(1, 3.0)]
    assert client.executions.statistics(tags=["exp-1", "other"]).groups == []
    assert tagged

    cut = client.executions.statistics(group_by=["metadata:score"], max_groups=1)
    assert cut.truncated is True
    assert len(cut.groups) == 1
    assert cut.group_count == 2
    assert cut.groups[0].keys == {"score": 10}
    assert cut.groups[0].execution_count == 2

    typed = client.executions.statistics(
        group_by=[kitaru.ExecutionStatisticsGrouping(kitaru.ExecutionStatisticsDimension.STATUS)],
        metrics=[
            kitaru.ExecutionStatisticsMetric(
                "total",
                kitaru.ExecutionStatisticsMetricSource.STEP_COUNT,
                kitaru.ExecutionStatisticsMetricAggregation.SUM,
            )
        ],
    )
    assert typed.groups[0].metrics == {"total": 9.0}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"group_by": ["colour"]}, "Bad group_by entry 'colour'"),
        ({"group_by": ["time:fortnight"]}, "time granularity"),
        ({"group_by": ["time:day", "time:hour"]}, "at most one time"),
        ({"group_by": ["status", "status"]}, "twice"),
        ({"group_by": ["metadata:"]}, "Bad group_by entry"),
        ({"metrics": ["d:duration"]}, "Bad metric"),
        ({"metrics": ["d:duration:median"]}, "metric aggregation"),
        ({"metrics": ["d:bogus:avg"]}, "metric source"),
        ({"metrics": ["d:duration:avg", "d:step_count:sum"]}, "named 'd'"),
        ({"metrics": [{"name": "x"}]}, "Bad metric"),
        ({"max_groups": 0}, "max_groups"),
        ({"max_groups": 10_001}, "max_groups"),
        ({"max_groups": True}, "max_groups"),
        ({"status": "paused"}, "Unknown status"),
    ],
)
def test_statistics_grammar_errors(any_store: str, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(KitaruUsageError, match=fragment):
        KitaruClient().executions.statistics(**kwargs)


# --- cohort --------------------------------------------------------------------------------


def test_cohort_filters_orders_and_limits(any_store: str) -> None:
    a, b, c = _run(1), _run(2), _run(3)
    failed = _failed_run()  # never reached transform
    replay = _replay(a, at="finish")
    other.run(4).wait(timeout=60)

    newest = kitaru.cohort(flow="pipeline", at="transform").resolve()
    assert isinstance(newest, kitaru.CohortResult)
    assert newest.exec_ids == [c, b, a]  # completed originals, newest first
    assert newest.scanned == 5
    assert newest.matched == 3
    assert newest.filtered == 2
    assert newest.ranked == 3
    assert newest.partial is False
    assert newest.to_json() == {
        "exec_ids": [c, b, a],
        "flow": "pipeline",
        "at": "transform",
        "deployment": None,
        "deployment_version": None,
        "order_by": "-started_at",
        "scanned": 5,
        "matched": 3,
        "partial": False,
        "filtered": 2,
        "ranked": 3,
    }

    oldest_two = kitaru.cohort(flow="pipeline", at="transform", order_by="started_at", limit=2)
    assert list(oldest_two.resolve()) == [a, b]
    with_replays = kitaru.cohort(
        flow="pipeline", at="transform", originals_only=False, status=["completed", "failed"]
    ).resolve()
    assert set(with_replays) == {a, b, c, replay}  # the failed one has no transform call
    by_duration = kitaru.cohort(flow="pipeline", at="fetch", order_by="-duration").resolve()
    assert set(by_duration) == {a, b, c}
    assert kitaru.cohort(flow="pipeline", at="fetch", status="failed").resolve().exec_ids == [
        failed
    ]

    scanned = kitaru.cohort(flow="pipeline", at="transform").resolve(max_scan=2)
    assert scanned.partial is True
    assert scanned.scanned == 2

    started = {e.exec_id: e.started_at for e in KitaruClient().executions.list(flow="pipeline")}
    started_b = started[b]
    assert started_b is not None
    since_b = kitaru.cohort(flow="pipeline", at="transform", since=started_b).resolve()
    assert set(since_b) == {b, c}
    until_b = kitaru.cohort(flow="pipeline", at="transform", until=started_b.isoformat()).resolve()
    assert set(until_b) == {a, b}

    via_client = KitaruClient().executions.cohort(flow="pipeline", at="finish", limit=1)
    assert via_client.resolve().exec_ids == [c]
    assert kitaru.cohort(flow="pipeline", at="nowhere").resolve().exec_ids == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"order_by": "cost"}, KitaruUsageError),
        ({"order_by": "-"}, KitaruUsageError),
        ({"limit": 0}, KitaruUsageError),
        ({"at": " "}, KitaruUsageError),
        ({"since": "yesterday"}, KitaruUsageError),
        ({"status": "done"}, KitaruUsageError),
        ({"deployment": "prod"}, KitaruFeatureNotAvailableError),
    ],
)
def test_cohort_bad_arguments(any_store: str, kwargs: dict[str, Any], error: type) -> None:
    arguments: dict[str, Any] = {"flow": "pipeline", "at": "transform", **kwargs}
    with pytest.raises(error):
        kitaru.cohort(**arguments)


def test_cohort_max_scan_must_be_positive(any_store: str) -> None:
    with pytest.raises(KitaruUsageError, match="max_scan"):
        kitaru.cohort(flow="pipeline", at="transform").resolve(max_scan=0)


def test_llm_order_fields_are_accepted(any_store: str) -> None:
    a = _run(1)
    for field in ("display_cost_usd", "-total_tokens"):
        assert kitaru.cohort(flow="pipeline", at="fetch", order_by=field).resolve().exec_ids == [a]


def test_names_are_exported_lazily() -> None:
    import subprocess
    import sys

    names = [
        "diff", "diff_matrix", "diff_cohort", "cohort", "ExecutionDiff", "CheckpointDiff",
        "CohortDiff", "CohortQuery", "CohortResult", "ExecutionStatistics",
        "ExecutionStatisticsGroup", "ExecutionStatisticsGrouping", "ExecutionStatisticsMetric",
        "ExecutionStatisticsDimension", "ExecutionStatisticsTimeGranularity",
        "ExecutionStatisticsMetricSource", "ExecutionStatisticsMetricAggregation",
        "build_compare_url", "build_compare_url_for_executions", "build_compare_urls",
        "compare_url_for_executions",
    ]  # fmt: skip
    code = (
        "import sys, kitaru\n"
        "assert 'kitaru.analysis' not in sys.modules, 'import kitaru loaded kitaru.analysis'\n"
        f"for name in {names!r}:\n"
        "    assert name in kitaru.__all__, name\n"
        "    getattr(kitaru, name)\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_undecodable_names_match_nothing(any_store: str) -> None:
    _run(1)
    client = KitaruClient()
    assert client.executions.statistics(flow="pipe\udcffline").groups == []
    assert client.executions.statistics(stack="loc\udcffal").groups == []
    assert kitaru.cohort(flow="pipe\udcffline", at="fetch").resolve().exec_ids == []
    assert kitaru.cohort(flow="pipeline", at="fe\udcfftch").resolve().exec_ids == []
