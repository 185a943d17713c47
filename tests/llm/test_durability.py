"""An LLM call that completed is never paid for again: crash + resume, replay, cost totals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kitaru
from kitaru import KitaruClient, checkpoint, flow
from kitaru.client import CallStatus
from tests.fakes.llm_server import CHAT, MESSAGES, FakeLlmServer, Reply

REPO_ROOT = Path(__file__).resolve().parents[2]


def _wait_for(predicate, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_runner_resumes_without_a_second_request(
    provider: FakeLlmServer, tmp_path: Path
) -> None:
    marker = tmp_path / "hanging"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        KITARU_LEASE_SECONDS="1",
        LLM_TEST_HANG_MARKER=str(marker),
    )
    provider.script(Reply("it survives crashes", input_tokens=12, output_tokens=4))
    child = subprocess.Popen(
        [sys.executable, "-c", "from tests.llm._flows import main; main()"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: marker.exists() or child.poll() is not None, "the child to hang")
        assert marker.exists(), child.communicate()[1]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        exec_id = child.stdout.readline().strip() if child.stdout else ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert provider.count(CHAT) == 1

    client = KitaruClient()
    _wait_for(lambda: client.executions.get(exec_id).is_orphaned, "the lease to expire")
    crashed = client.executions.get(exec_id)
    assert [(c.call_id, c.call_status) for c in crashed.checkpoints] == [
        ("llm", CallStatus.COMPLETED)
    ]
    resumed = client.executions.resume(exec_id, wait=True)
    assert resumed.status.value == "completed"
    assert provider.count() == 1  # the recorded reply was used: no second request
    assert KitaruClient().executions.get(exec_id).checkpoints[-1].output.load() == (
        "IT SURVIVES CRASHES"
    )
    summary = resumed.llm_usage_summary
    assert summary is not None
    assert (summary["call_count"], summary["total_tokens"]) == (1, 16)


def test_replay_reuses_reruns_and_overrides_llm_calls(provider: FakeLlmServer) -> None:
    provider.script(
        Reply("plan", input_tokens=10, output_tokens=2),
        Reply("draft", input_tokens=20, output_tokens=8),
    )

    @flow
    def writer() -> str:
        plan = kitaru.llm("Make a plan", model="openai/gpt-4o-mini")
        return kitaru.llm(f"Write from: {plan}", model="openai/gpt-4o-mini")

    handle = writer.run()
    assert handle.wait() == "draft"
    client = KitaruClient()
    original = client.executions.get(handle.exec_id)
    assert original.llm_usage_summary["total_tokens"] == 40
    assert provider.count() == 2

    # Replay from the second call: the first is reused (not sent, not counted).
    provider.script(Reply("draft v2", input_tokens=20, output_tokens=9))
    replay = client.executions.replay(handle.exec_id, at="llm:2")
    replayed = client.executions.get(replay.results[0].replay_exec_id)
    assert provider.count() == 3
    assert provider.requests[-1].body["messages"][-1]["content"] == "Write from: plan"
    assert [c.call_status for c in replayed.checkpoints] == [
        CallStatus.REUSED,
        CallStatus.COMPLETED,
    ]
    assert replayed.llm_usage_summary["total_tokens"] == 29  # only the call it made

    # An output override answers the call without a request.
    replay = client.executions.replay(
        handle.exec_id, at="llm", invocation_overrides={"llm": {"output": "fixed plan"}}
    )
    assert provider.count() == 4  # llm:2 ran again, llm did not
    assert provider.requests[-1].body["messages"][-1]["content"] == "Write from: fixed plan"
    overridden = client.executions.get(replay.results[0].replay_exec_id)
    assert overridden.checkpoints[0].call_status is CallStatus.REUSED

    # A model override sends the call to another model.
    client.executions.replay(
        handle.exec_id,
        at="llm:2",
        invocation_overrides={"llm:2": {"model": "anthropic/claude-test"}},
    )
    assert (provider.requests[-1].api, provider.requests[-1].model) == (MESSAGES, "claude-test")


def test_cost_totals_are_the_sum_of_the_calls(provider: FakeLlmServer) -> None:
    provider.script(
        Reply("a", input_tokens=1000, output_tokens=100),
        Reply("b", input_tokens=2000, output_tokens=200),
        Reply("c", input_tokens=300, output_tokens=30),
    )

    @checkpoint
    def inner() -> str:
        return kitaru.llm("c", model="anthropic/claude-3-5-haiku-latest")

    @flow
    def costly() -> str:
        kitaru.llm("a", model="openai/gpt-4o-mini")
        kitaru.llm("b", model="openai/gpt-4o")
        return inner()

    handle = costly.run()
    handle.wait()
    execution = KitaruClient().executions.get(handle.exec_id)
    records = execution.llm_usage_records
    assert len(records) == 3
    assert all(r["cost_source"] == "estimated" and r["cost_usd"] > 0 for r in records)
    summary = execution.llm_usage_summary
    assert summary["total_tokens"] == 3630
    assert summary["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in records))
    from genai_prices import Usage, calc_price

    expected = calc_price(
        Usage(input_tokens=1000, output_tokens=100), "gpt-4o-mini", provider_id="openai"
    )
    assert records[0]["cost_usd"] == pytest.approx(float(expected.total_price))

    stats = KitaruClient().executions.statistics(
        metrics=["llm_total_tokens", "llm_display_cost", "llm_estimated_cost", "llm_call_count"]
    )
    (group,) = stats.groups
    assert group.metrics["llm_total_tokens"] == 3630
    assert group.metrics["llm_call_count"] == 3
    assert group.metrics["llm_display_cost"] == pytest.approx(summary["cost_usd"])
    assert group.metrics["llm_estimated_cost"] == pytest.approx(summary["cost_usd"])


def test_costs_off_records_tokens_without_cost(
    provider: FakeLlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LLM_ESTIMATED_COSTS", "off")

    @flow
    def cheap() -> str:
        return kitaru.llm("x", model="openai/gpt-4o-mini")

    handle = cheap.run()
    handle.wait()
    execution = KitaruClient().executions.get(handle.exec_id)
    (record,) = execution.llm_usage_records
    assert record["cost_usd"] is None
    assert record["total_tokens"] is not None
    assert execution.frozen_execution_spec.resolved_execution.llm_estimated_costs == "off"
