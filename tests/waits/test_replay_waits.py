"""Replaying a flow that waited: the waits its body reaches before ``at`` keep their
answers (like the calls before ``at``), the ones after it ask again. Both stores."""

from __future__ import annotations

import pytest

from kitaru import ExecutionStatus, FlowHandle
from kitaru.client import KitaruClient
from tests.waits import _flows
from tests.waits.conftest import wait_until_live_waiting


@pytest.fixture
def answered(any_store: str, client: KitaruClient) -> str:
    handle = _flows.asks_in_between.run(4)
    wait_until_live_waiting(client, handle.exec_id)
    client.executions.input(handle.exec_id, value=7)
    assert handle.wait(timeout=30) == 47
    return handle.exec_id


def test_a_replay_after_the_wait_reuses_its_answer(answered: str, client: KitaruClient) -> None:
    submission = client.executions.replay(answered, at="after_the_answer", wait=True)
    (row,) = submission.results
    replay = client.executions.get(row.replay_exec_id)
    assert replay.status is ExecutionStatus.COMPLETED
    assert FlowHandle(row.replay_exec_id).wait(timeout=30) == 47
    assert replay.pending_waits == []
    # The source is untouched; the replay holds its own copy of the answer.
    assert client.executions.get(answered).status is ExecutionStatus.COMPLETED


def test_a_replay_from_before_the_wait_asks_again(answered: str, client: KitaruClient) -> None:
    submission = client.executions.replay(answered, at="before_the_question", wait=False)
    (row,) = submission.results
    waiting = wait_until_live_waiting(client, row.replay_exec_id)
    assert [w.wait_id for w in waiting.pending_waits] == ["num"]
    client.executions.input(row.replay_exec_id, value=1)
    assert row.handle is not None
    assert row.handle.wait(timeout=30) == 41
