"""Cron schedules: the CLI and API, racing workers firing each slot once, missed slots."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from kitaru import KitaruStateError, KitaruUsageError
from kitaru._backend import get_backend
from kitaru._store import ExecutionStatus
from kitaru.client import KitaruClient
from kitaru.schedules._firing import fire_due
from tests.durable_time import _flows
from tests.waits.conftest import REPO_ROOT, eventually, kitaru_cli, one_error_line

FLOW = "tests.durable_time._flows:tick"


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_schedule_commands_create_show_pause_resume_and_delete(client: KitaruClient) -> None:
    created = _json(
        kitaru_cli(
            "schedule",
            "create",
            "digest",
            "--flow",
            str(REPO_ROOT / "tests/durable_time/_flows.py") + ":tick",
            "--cron",
            "0 7 * * *",
            "--timezone",
            "Europe/Berlin",
            "--inputs",
            '{"label": "am"}',
            "--missed",
            "run_once",
            "-o",
            "json",
        )
    )["item"]
    assert isinstance(created, dict)
    assert created["cron"] == "0 7 * * *"
    assert created["timezone"] == "Europe/Berlin"
    assert created["inputs"] == {"label": "am"}
    assert created["missed"] == "run_once"
    assert created["next_run_at"].endswith("+00:00")  # type: ignore[union-attr]
    listed = _json(kitaru_cli("schedule", "list", "-o", "json"))
    assert [s["name"] for s in listed["items"]] == ["digest"]  # type: ignore[union-attr,index]
    text = kitaru_cli("schedule", "show", "digest")
    assert "0 7 * * * (Europe/Berlin)" in text.stdout
    paused = _json(kitaru_cli("schedule", "pause", "digest", "-o", "json"))["item"]
    assert paused["paused"] is True  # type: ignore[index]
    assert paused["next_run_at"] is None  # type: ignore[index]
    resumed = _json(kitaru_cli("schedule", "resume", "digest", "-o", "json"))["item"]
    assert resumed["paused"] is False  # type: ignore[index]
    assert _json(kitaru_cli("schedule", "delete", "digest", "-o", "json"))["item"] == {
        "name": "digest",
        "deleted": True,
    }
    assert client.schedules.list() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "61 * * * *"], "not a valid cron expression"),
        (["--cron", "* * * * *", "--timezone", "Mars/Olympus"], "Unknown time zone"),
        (["--cron", "* * * * *", "--inputs", "[1]"], "must be a JSON object"),
        (["--cron", "* * * * *", "--inputs", "{nope"], "not valid JSON"),
        (["--cron", "* * * * *", "--missed", "sometimes"], "not a missed-slot policy"),
        (["--cron", "* * * * *", "--inputs", '{"nope": 1}'], "nope"),
        (["--cron", "0 0 30 2 *"], "has no time to fire"),  # 30 February
        (["--cron", "5 * * * * * 2030"], "not a valid cron expression"),  # a 7th field
        (["--cron", "* * * * * * 1999"], "not a valid cron expression"),
        (["--cron", "* * * * *", "--stack", "nosuch"], "Known stacks: local"),
    ],
)
def test_bad_schedules_are_refused_with_one_line(args: list[str], message: str) -> None:
    result = kitaru_cli("schedule", "create", "bad", "--flow", FLOW, *args)
    assert result.returncode != 0
    assert message in one_error_line(result.stderr)
    assert "Traceback" not in result.stderr
    assert KitaruClient().schedules.list() == []


def test_the_api_refuses_duplicates_unknown_flows_and_unknown_names(
    client: KitaruClient,
) -> None:
    _flows.tick.schedule(cron="0 * * * *")
    assert client.schedules.get("tick").flow_name == "tick"
    with pytest.raises(KitaruStateError, match="exists already"):
        _flows.tick.schedule(cron="5 * * * *")
    with pytest.raises(KitaruUsageError, match="no @flow named 'missing'"):
        client.schedules.create("x", flow="tests.durable_time._flows:missing", cron="* * * * *")
    with pytest.raises(KitaruStateError, match="No schedule named 'ghost'"):
        client.schedules.pause("ghost")
    shown = kitaru_cli("schedule", "show", "ghost", "-o", "json")
    assert shown.returncode != 0
    assert shown.stdout == ""
    assert json.loads(shown.stderr)["error"]["type"] == "KitaruStateError"


def test_an_unknown_stack_is_refused_at_create_not_at_every_slot(client: KitaruClient) -> None:
    import kitaru

    with pytest.raises(KitaruUsageError) as info:
        _flows.tick.schedule(cron="* * * * *", stack="nosuch")
    message = str(info.value)
    assert "'nosuch'" in message
    assert "Known stacks: local" in message
    assert "kitaru stack create nosuch" in message
    with pytest.raises(KitaruUsageError, match="Known stacks: local"):
        client.schedules.create("s1", flow=FLOW, cron="* * * * *", stack="nosuch")
    assert client.schedules.list() == []  # nothing stored

    kitaru.create_stack("nightly", activate=False)
    made = client.schedules.create("s1", flow=FLOW, cron="* * * * *", stack="nightly")
    assert made.stack == "nightly"


def test_a_schedule_that_can_never_fire_blocks_neither_listing_nor_the_others(
    any_store: str, client: KitaruClient
) -> None:
    """A store may hold one from before such expressions were refused: it shows no next
    run, the worker warns about it, and every other schedule fires as usual."""
    with pytest.raises(KitaruUsageError, match="has no time to fire"):
        _flows.tick.schedule(name="never", cron="0 0 30 2 *")
    assert client.schedules.list() == []
    client.schedules.create("every-second", flow=_flows.tick, cron="* * * * * *")
    good = get_backend().store.get_schedule("every-second")
    assert good is not None
    from dataclasses import replace

    get_backend().store.create_schedule(replace(good, name="never", cron="0 0 30 2 *"))
    listed = {s.name: s for s in client.schedules.list()}
    assert listed["never"].next_run_at is None
    assert listed["every-second"].next_run_at is not None
    assert client.schedules.get("never").next_run_at is None
    shown = kitaru_cli("schedule", "list", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    warned: set[str] = set()
    fire_due(get_backend(), warned=warned, now=good.cursor + 2.5)
    assert warned == {"never"}
    eventually(
        lambda: len(client.executions.list(schedule="every-second")) >= 2,
        what="the good schedule's slots",
    )
    assert client.executions.list(schedule="never") == []


def test_three_racing_workers_fire_each_slot_exactly_once(
    any_store: str, client: KitaruClient, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    client.schedules.create("every-second", flow=_flows.tick, cron="* * * * * *")
    workers = [spawn("-m", "kitaru.cli", "worker", "--poll-interval", "0.2") for _ in range(3)]
    time.sleep(6)
    for worker in workers:
        worker.send_signal(signal.SIGINT)  # stop polling, finish what runs
    for worker in workers:
        worker.communicate(timeout=60)
        assert worker.returncode == 0
    executions = client.executions.list(schedule="every-second")
    slots = [e.schedule_slot.timestamp() for e in executions if e.schedule_slot]
    assert len(slots) == len(executions) >= 4
    assert len(set(slots)) == len(slots)  # no slot started twice
    assert sorted(slots) == [min(slots) + i for i in range(len(slots))]  # none skipped
    fires = get_backend().store.schedule_fires("every-second")
    assert sorted(f.slot for f in fires) == sorted(slots)
    assert len({f.claimed_by for f in fires}) >= 1
    assert all(e.status is ExecutionStatus.COMPLETED for e in executions)
    assert all(e.flow_name == "tick" for e in executions)


@pytest.mark.parametrize(("policy", "expected"), [("skip", [10]), ("run_once", [1, 10])])
def test_missed_slots_follow_the_policy(
    any_store: str,
    client: KitaruClient,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
    expected: list[int],
) -> None:
    monkeypatch.setenv("KITARU_SCHEDULE_GRACE", "0.5")
    client.schedules.create("nightly", flow=_flows.tick, cron="* * * * * *", missed=policy)
    record = get_backend().store.get_schedule("nightly")
    assert record is not None
    base = math.floor(record.cursor)
    # No worker ran for ten slots: only the last is inside the grace period.
    now = base + 10.2
    fire_due(get_backend(), warned=set(), now=now)
    fire_due(get_backend(), warned=set(), now=now)  # a second worker's pass: nothing more
    eventually(
        lambda: all(e.status.is_finished for e in client.executions.list(schedule="nightly")),
        what="the scheduled executions to finish",
    )
    started = sorted(
        round(e.schedule_slot.timestamp()) - base
        for e in client.executions.list(schedule="nightly")
        if e.schedule_slot
    )
    assert started == expected
    listed = kitaru_cli("executions", "list", "--schedule", "nightly", "-o", "json")
    assert len(json.loads(listed.stdout)["items"]) == len(expected)


def test_a_slot_whose_claiming_worker_died_is_started_by_another(
    any_store: str, client: KitaruClient
) -> None:
    """Claimed, never started (the worker died in between): started once, later."""
    from kitaru._store import ScheduleFireRecord
    from kitaru.schedules._firing import STRANDED_AFTER, slot_exec_id

    client.schedules.create("yearly", flow=_flows.tick, cron="0 0 1 1 *")  # nothing due
    store = get_backend().store
    slot = math.floor(time.time()) - 3600.0
    exec_id = slot_exec_id("yearly", slot)
    dead = ScheduleFireRecord("yearly", slot, exec_id, "dead-worker", time.time())
    assert store.claim_slot(dead)
    fire_due(get_backend(), warned=set())  # too recent: its worker may still be starting it
    assert client.executions.list(schedule="yearly") == []

    later = time.time() + STRANDED_AFTER + 1
    fire_due(get_backend(), warned=set(), now=later)
    fire_due(get_backend(), warned=set(), now=later)  # a second worker's pass: no repeat
    eventually(
        lambda: all(e.status.is_finished for e in client.executions.list(schedule="yearly")),
        what="the stranded slot's execution to finish",
    )
    [execution] = client.executions.list(schedule="yearly")
    assert execution.exec_id == exec_id
    assert execution.status is ExecutionStatus.COMPLETED
    [fire] = store.schedule_fires("yearly")
    assert fire.started_at is not None
    # A started slot whose execution was deleted since is not started again.
    client.executions.delete(exec_id)
    fire_due(get_backend(), warned=set(), now=later + 60)
    assert client.executions.list(schedule="yearly") == []


def test_a_paused_schedule_does_not_fire_and_resumes_from_now(client: KitaruClient) -> None:
    client.schedules.create("paused", flow=_flows.tick, cron="* * * * * *")
    client.schedules.pause("paused")
    record = get_backend().store.get_schedule("paused")
    assert record is not None
    fire_due(get_backend(), warned=set(), now=record.cursor + 5)
    assert client.executions.list(schedule="paused") == []
    resumed = client.schedules.resume("paused")
    assert resumed.next_run_at is not None
    assert resumed.next_run_at.timestamp() > time.time() - 1


def test_missing_croniter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "croniter", None)  # as if the extra were not installed
    with pytest.raises(KitaruUsageError, match=r"schedules extra"):
        KitaruClient().schedules.create("x", flow=_flows.tick, cron="* * * * *")
    assert KitaruClient().schedules.list() == []
