"""``kitaru.diff`` / ``diff_matrix`` / ``diff_cohort``: how replays differ from their source.

Checkpoint calls are aligned first by ``original_call_id`` (a replay-reused call
names the source call it took its output from), then by name in call order.
Deltas are replay minus original. Artifacts are compared by the SHA-256 of their
stored bytes, so nothing is loaded (or unpickled).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kitaru.analysis._compare_urls import build_compare_urls, server_url_of
from kitaru.errors import KitaruUsageError

if TYPE_CHECKING:
    from kitaru.analysis._cohort import CohortResult
    from kitaru.client import KitaruClient
    from kitaru.client._models import CheckpointCall, Execution


@dataclass(frozen=True)
class CheckpointDiff:
    """One aligned pair of checkpoint calls (one side is None if it has no partner)."""

    name: str
    original_call_id: str | None
    replay_call_id: str | None
    status_match: bool
    #: Replay duration minus original duration, in milliseconds (None if either is unknown).
    duration_delta_ms: float | None
    #: [llm] ``prompt_tokens, completion_tokens, total_tokens`` deltas; None without LLM usage.
    token_delta: dict[str, int] | None
    #: ``{role: (original sha256, replay sha256)}``: "output" for the return value,
    #: "saved:<name>" for ``kitaru.save`` artifacts; None on a side without it.
    artifact_hashes: dict[str, tuple[str | None, str | None]]
    #: [llm] cost delta in USD; None without LLM usage.
    cost_delta_usd: float | None = None
    # -- ours --
    original_status: str | None = field(default=None, kw_only=True)
    replay_status: str | None = field(default=None, kw_only=True)

    @property
    def artifacts_match(self) -> bool:
        return all(a == b for a, b in self.artifact_hashes.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "original_call_id": self.original_call_id,
            "replay_call_id": self.replay_call_id,
            "status_match": self.status_match,
            "duration_delta_ms": self.duration_delta_ms,
            "token_delta": self.token_delta,
            "artifact_hashes": {
                role: {"original": original, "replay": replay}
                for role, (original, replay) in self.artifact_hashes.items()
            },
            "cost_delta_usd": self.cost_delta_usd,
            "original_status": self.original_status,
            "replay_status": self.replay_status,
        }


@dataclass(frozen=True)
class ExecutionDiff:
    """An execution compared with each of its replays (or other executions)."""

    original_exec_id: str
    compared: list[tuple[str, list[CheckpointDiff]]]
    #: Dashboard links, one per compared execution (with the original); none when the
    #: client reads a store directly (no server, so no dashboard to link to).
    urls: list[str]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_exec_id": self.original_exec_id,
            "compared": [
                {"replay_exec_id": replay_id, "checkpoints": [d.to_dict() for d in diffs]}
                for replay_id, diffs in self.compared
            ],
            "urls": list(self.urls),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class CohortDiff:
    """One ``ExecutionDiff`` per row."""

    rows: list[ExecutionDiff]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [row.to_dict() for row in self.rows]}


def _client(client: KitaruClient | None) -> KitaruClient:
    if client is not None:
        return client
    from kitaru.client import KitaruClient

    return KitaruClient()


def _exec_id(value: Any, what: str) -> str:
    exec_id = getattr(value, "exec_id", value)
    if not isinstance(exec_id, str) or not exec_id.strip():
        raise KitaruUsageError(f"{what} must be an execution id (a string), got {value!r}.")
    return exec_id


def _hashes(call: CheckpointCall | None) -> dict[str, str]:
    if call is None:
        return {}
    hashes: dict[str, str] = {}
    for artifact in call.artifacts:
        role = "output" if artifact.role == "output" else f"saved:{artifact.name}"
        hashes[role] = artifact.sha256
    return hashes


def _pair(original: CheckpointCall | None, replay: CheckpointCall | None) -> CheckpointDiff:
    side = replay if replay is not None else original
    assert side is not None
    before, after = _hashes(original), _hashes(replay)
    delta = None
    if (
        original is not None
        and replay is not None
        and original.duration is not None
        and replay.duration is not None
    ):
        delta = (replay.duration - original.duration) * 1000.0
    return CheckpointDiff(
        name=side.name,
        original_call_id=None if original is None else original.call_id,
        replay_call_id=None if replay is None else replay.call_id,
        status_match=original is not None
        and replay is not None
        and original.status is replay.status,
        duration_delta_ms=delta,
        token_delta=None,
        artifact_hashes={role: (before.get(role), after.get(role)) for role in {**before, **after}},
        cost_delta_usd=None,
        original_status=None if original is None else original.status.value,
        replay_status=None if replay is None else replay.status.value,
    )


def align(original: Execution, replay: Execution) -> list[CheckpointDiff]:
    """Pairs of calls, in the replay's call order (unpaired originals at their place)."""
    by_call_id = {call.call_id: call for call in original.checkpoints}
    paired: dict[str, CheckpointCall] = {}  # replay call id -> original call
    taken: set[str] = set()
    for call in replay.checkpoints:
        # A reused/cached call names the call whose output it took; only a call of
        # the original execution counts (a cache hit may point anywhere).
        source = call.original_call_id
        if (
            source is not None
            and source in by_call_id
            and call.source_exec_id in (None, original.exec_id)
            and source not in taken
        ):
            paired[call.call_id] = by_call_id[source]
            taken.add(source)
    for call in replay.checkpoints:
        if call.call_id in paired:
            continue
        match = next(
            (c for c in original.checkpoints if c.name == call.name and c.call_id not in taken),
            None,
        )
        if match is not None:
            paired[call.call_id] = match
            taken.add(match.call_id)
    diffs = [_pair(paired.get(call.call_id), call) for call in replay.checkpoints]
    # Original calls the replay never made, placed after the diffs of their neighbours.
    order = {call.call_id: index for index, call in enumerate(original.checkpoints)}
    missing = [c for c in original.checkpoints if c.call_id not in taken]
    for call in missing:
        position = len(diffs)
        for index, diff in enumerate(diffs):
            other = diff.original_call_id
            if other is not None and order.get(other, -1) > order[call.call_id]:
                position = index
                break
        diffs.insert(position, _pair(call, None))
    return diffs


def _compare(
    original: Execution, others: Sequence[Execution], *, explicit: bool, server: str | None
) -> ExecutionDiff:
    warnings: list[str] = []
    if not others:
        warnings.append(
            f"Execution {original.exec_id} has no replays to compare with; replay it with "
            f"`kitaru executions replay {original.exec_id} --at <checkpoint>` first."
        )
    if not original.status.is_finished:
        warnings.append(f"Execution {original.exec_id} is still {original.status.value}.")
    compared = []
    for other in others:
        if explicit and other.original_exec_id != original.exec_id:
            warnings.append(
                f"Execution {other.exec_id} is not a replay of {original.exec_id}"
                + (f" (it replays {other.original_exec_id})" if other.original_exec_id else "")
                + "; compared call by call anyway."
            )
        if not other.status.is_finished:
            warnings.append(f"Execution {other.exec_id} is still {other.status.value}.")
        compared.append((other.exec_id, align(original, other)))
    return ExecutionDiff(
        original_exec_id=original.exec_id,
        compared=compared,
        urls=build_compare_urls(
            original_exec_id=original.exec_id,
            replay_exec_ids=[other.exec_id for other in others],
            server_url=server,
            flow_id=original.flow_name,
        ),
        warnings=warnings,
    )


def diff(original: Any, *executions: Any, client: KitaruClient | None = None) -> ExecutionDiff:
    """Compare ``original`` with the given executions, or with all of its replays.

    Each argument is an execution id (or unique prefix) or an ``Execution``.
    Unknown ids raise ``KitaruBackendError``.
    """
    resolved = _client(client)
    api = resolved.executions
    source = api.get(_exec_id(original, "diff()'s original"))
    if executions:
        others = [api.get(_exec_id(e, "An execution to compare")) for e in executions]
    else:
        others = [api.get(exec_id) for exec_id in replays_of(api, source.exec_id)]
    return _compare(source, others, explicit=bool(executions), server=server_url_of(resolved))


def replays_of(api: Any, exec_id: str) -> list[str]:
    """Ids of every execution whose ``original_exec_id`` is ``exec_id``, oldest first."""
    import sqlalchemy as sa

    from kitaru._store import schema as t

    ex = t.executions.c
    query = sa.select(ex.id).where(ex.original_exec_id == exec_id).order_by(ex.created_at, ex.id)
    with api._backend.store.read() as conn:
        return [row[0] for row in conn.execute(query).all()]


def _ids(exec_ids: CohortResult | Iterable[Any], what: str) -> list[str]:
    if isinstance(exec_ids, str):
        raise KitaruUsageError(
            f"{what} takes a list of execution ids (or a CohortResult), not one string "
            f"({exec_ids!r}); wrap it in a list."
        )
    return [_exec_id(value, f"{what} entry") for value in exec_ids]


def diff_matrix(
    exec_ids: CohortResult | Iterable[Any], *, client: KitaruClient | None = None
) -> CohortDiff:
    """Every execution compared with every other one: one row per execution."""
    resolved = _client(client)
    executions = [resolved.executions.get(i) for i in _ids(exec_ids, "diff_matrix()")]
    server = server_url_of(resolved)
    return CohortDiff(
        rows=[
            _compare(
                execution,
                [o for o in executions if o is not execution],
                explicit=False,
                server=server,
            )
            for execution in executions
        ]
    )


def diff_cohort(
    exec_ids: CohortResult | Iterable[Any], *, client: KitaruClient | None = None
) -> CohortDiff:
    """Each execution (e.g. of a resolved cohort) compared with all of its replays."""
    resolved = _client(client)
    return CohortDiff(
        rows=[diff(exec_id, client=resolved) for exec_id in _ids(exec_ids, "diff_cohort()")]
    )
