"""``KitaruClient`` connected to a Kitaru server: the same methods, over HTTP.

Each method makes the matching REST call and rebuilds the same models from the
JSON; errors come back as the same ``Kitaru*Error`` classes. What runs flow
code (``retry``/``resume`` with ``wait=True`` waits for a worker to do it) is
done by a ``kitaru worker`` on the server's store, never in the server.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kitaru.client import _remote_models as models
from kitaru.client._client import LOG_SOURCES, _at_least_one, _page, _statuses
from kitaru.client._events import ExecutionEvent
from kitaru.client._ids import id_text
from kitaru.client._models import ArtifactRef, Execution, LogEntry, PendingWait
from kitaru.errors import (
    KitaruNotFoundError,
    KitaruStateError,
    KitaruTimeoutError,
    KitaruUsageError,
    artifact_not_found,
    execution_not_found,
)

if TYPE_CHECKING:
    from kitaru._store import ExecutionRecord, ExecutionStatus
    from kitaru._store.records_extra import WaitRecord
    from kitaru.analysis._cohort import CohortQuery
    from kitaru.analysis._statistics import ExecutionStatistics
    from kitaru.client._client import KitaruClient
    from kitaru.client._remote import Session
    from kitaru.replay import ReplaySubmission

#: Rows asked for per request when a call needs more (the server's default cap is 500).
_BATCH = 200
_POLL_MAX = 0.5
#: The lease owner of an execution the server handed to workers (retry, resume, replay).
HANDOFF_OWNER = "kitaru-server:handoff"
#: Seconds ``wait`` waits on a handed-over execution before saying it needs a worker.
NO_WORKER_HINT_AFTER = 10.0

logger = logging.getLogger("kitaru")


def no_worker_hint(exec_id: str) -> str:
    return (
        f"Execution {exec_id} is waiting for a `kitaru worker` on the server's store to run "
        "it; none has taken it yet. Start one where the flow's code is (`kitaru worker`), or "
        "stop waiting with Ctrl-C: it runs once a worker is up."
    )


def handed_off(execution: Execution) -> bool:
    """Still held by the server's hand-over: no worker has taken it."""
    return execution.lease_owner == HANDOFF_OWNER and not execution.status.is_finished


class RemoteStore:
    """The part of the store a ``FlowHandle`` reads, answered by the server."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def require_execution(self, exec_id: str) -> ExecutionRecord:
        from kitaru._store import ExecutionRecord, ExecutionStatus

        data = self.session.get(f"/executions/{_path_id(exec_id, 'execution')}/result")
        return ExecutionRecord(
            id=data["exec_id"],
            flow_name=data["flow_name"],
            flow_ref={},
            status=ExecutionStatus(data["status"]),
            stack="",
            config={},
            created_at=0.0,
            result_artifact_id=data.get("result_artifact_id"),
            failure=data.get("failure"),
        )

    def get_execution(self, exec_id: str) -> ExecutionRecord | None:
        from kitaru.errors import KitaruBackendError

        try:
            return self.require_execution(exec_id)
        except KitaruBackendError:
            return None

    def get_status(self, exec_id: str) -> ExecutionStatus | None:
        record = self.get_execution(exec_id)
        return None if record is None else record.status

    def get_wait(self, exec_id: str, wait_id: str) -> WaitRecord | None:
        """A wait of the execution with its recorded answer: ``kitaru executions input``
        echoes the answer as stored (``{"score": 7, "comment": "ok"}`` for ``--value
        '{"score": "7"}'``), through a server as on the store."""
        from kitaru._store import WaitStatus
        from kitaru._store.records_extra import WaitRecord

        page = self.session.get(f"/executions/{_path_id(exec_id, 'execution')}/waits", all=True)
        for item in page["items"]:
            if item.get("wait_id") != wait_id or "status" not in item:
                continue  # another wait, or an older server (no recorded answers)
            return WaitRecord(
                exec_id=item.get("exec_id") or exec_id,
                wait_id=wait_id,
                status=WaitStatus(item["status"]),
                created_at=0.0,
                name=item.get("name"),
                question=item.get("question"),
                json_schema=item.get("schema"),
                metadata=dict(item.get("metadata") or {}),
                timeout=item.get("timeout"),
                value=item.get("value"),
            )
        return None


class RemoteBackend:
    """What models and handles need of a backend through a server: reads, loading values."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.store = RemoteStore(session)

    def load_artifact(self, artifact_id: str, *, from_script: bool = False) -> Any:
        """Download the bytes and decode them here (where the caller's code runs)."""
        from kitaru._blobs import Serialized, deserialize
        from kitaru._blobs.inputs import INPUTS
        from kitaru._blobs.inputs import unpack as unpack_inputs

        meta = self.session.get(f"/artifacts/{_path_id(artifact_id, 'artifact')}")
        data = self.session.request("GET", f"/artifacts/{meta['artifact_id']}/data", raw=True)
        if meta.get("serializer") == INPUTS:
            return unpack_inputs(data)
        return deserialize(Serialized(meta["serializer"], meta.get("type_path"), data))


class RemoteExecutionsAPI:
    def __init__(self, client: KitaruClient, session: Session) -> None:
        self._client = client
        self._session = session

    def _execution(self, data: dict[str, Any]) -> Execution:
        return models.execution(data, self._client)

    def resolve_id(self, exec_id: str) -> str:
        try:
            found: str = self._session.get(f"/executions/{_path_id(exec_id, 'execution')}")[
                "exec_id"
            ]
        except KitaruUsageError:
            raise
        except Exception:
            return exec_id
        return found

    def get(self, exec_id: str) -> Execution:
        return self._execution(self._session.get(f"/executions/{_path_id(exec_id, 'execution')}"))

    def _pages(
        self, *, flow: str | None, status: Any, wanted: int | None, schedule: str | None = None
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {
            "flow": flow,
            "status": _statuses(status),
            "schedule": schedule,
            "full": True,
        }
        cursor: str | None = None
        seen = 0
        while wanted is None or seen < wanted:
            batch = _BATCH if wanted is None else min(_BATCH, wanted - seen)
            batch = self._session.page_size(batch)
            page = self._session.get("/executions", **params, limit=batch, cursor=cursor)
            for item in page["items"]:
                seen += 1
                yield item
            cursor = page.get("next_cursor")
            if cursor is None:
                return

    def list(
        self,
        *,
        flow: str | None = None,
        status: Any = None,
        limit: int | None = None,
        page: int | None = None,
        size: int | None = None,
        schedule: str | None = None,
    ) -> builtins.list[Execution]:
        row_limit, offset = _page(limit, page, size)
        wanted = None if row_limit is None else row_limit + offset
        items = builtins.list(
            self._pages(flow=flow, status=status, wanted=wanted, schedule=schedule)
        )
        return [self._execution(item) for item in items[offset:]]

    def latest(self, *, flow: str | None = None, status: Any = None) -> Execution:
        found = self.list(flow=flow, status=status, limit=1)
        if not found:
            what = f" of flow {flow!r}" if flow else ""
            if status is not None:
                what += f" with status {', '.join(_statuses(status) or [])}"
            raise KitaruNotFoundError(f"No executions{what} found.")
        return found[0]

    def wait(self, exec_id: str, timeout: float | None = None) -> Execution:
        started = time.monotonic()
        delay = 0.02
        hinted = False
        while True:
            execution = self.get(exec_id)
            if execution.status.is_finished:
                return execution
            elapsed = time.monotonic() - started
            if not hinted and elapsed >= NO_WORKER_HINT_AFTER and handed_off(execution):
                hinted = True  # the server handed it over and no worker has taken it yet
                logger.warning(no_worker_hint(execution.exec_id))
            if timeout is not None and elapsed >= timeout:
                raise KitaruTimeoutError(
                    exec_id=execution.exec_id,
                    timeout_seconds=timeout,
                    elapsed_seconds=elapsed,
                    last_status=execution.status,
                )
            pause = delay if timeout is None else min(delay, timeout - elapsed)
            time.sleep(max(pause, 0.0))
            delay = min(delay * 2, _POLL_MAX)

    def _control(self, exec_id: str, action: str, wait: bool = False) -> Execution:
        execution = self._execution(
            self._session.post(f"/executions/{_path_id(exec_id, 'execution')}/{action}")
        )
        return self.wait(execution.exec_id) if wait else execution

    def resume(self, exec_id: str, *, wait: bool = False) -> Execution:
        """Hand the execution to a worker on the server's store (``wait``: until it ends).

        Refused while a runner's lease holds it; when that runner was a process of this
        machine that is gone (killed), the server is told so and takes over at once, as
        a local resume does, instead of waiting out the lease.
        """
        try:
            return self._control(exec_id, "resume", wait)
        except KitaruStateError:
            owner = self._gone_owner(exec_id)
            if owner is None:
                raise
        path = f"/executions/{_path_id(exec_id, 'execution')}/resume"
        answer = self._session.request("POST", path, json={}, params={"gone_owner": owner})
        execution = self._execution(answer)
        return self.wait(execution.exec_id) if wait else execution

    def _gone_owner(self, exec_id: str) -> str | None:
        """The lease owner of the execution if it is a runner of this machine that is gone."""
        from kitaru._runtime.leases import runner_gone
        from kitaru._store import ExecutionStatus

        execution = self.get(exec_id)
        owner = execution.lease_owner
        if execution.status not in (ExecutionStatus.RUNNING, ExecutionStatus.WAITING):
            return None
        return owner if owner is not None and runner_gone(owner) else None

    def retry(self, exec_id: str, *, wait: bool = False) -> Execution:
        """Hand the failed execution to a worker on the server's store to run again."""
        return self._control(exec_id, "retry", wait)

    def cancel(self, exec_id: str) -> Execution:
        return self._control(exec_id, "cancel")

    def delete(self, exec_id: str, *, recursive: bool = False) -> None:
        suffix = "?recursive=true" if recursive else ""
        self._session.request("DELETE", f"/executions/{_path_id(exec_id, 'execution')}{suffix}")

    def input(
        self, exec_id: str, *, wait: str | None = None, value: Any = None, resume: bool = True
    ) -> Execution:
        """Answer a wait; the server checks ``value`` against the wait's JSON schema.

        The runner (or a worker, if the runner let go) continues the execution;
        ``resume`` is accepted for compatibility. What JSON cannot carry as the wait's
        type would take it is refused here, before anything is sent (see
        ``_remote_waits``), with the ``KitaruWaitValidationError`` a local call raises.
        """
        del resume
        from kitaru.client import _remote_waits

        path = f"/executions/{_path_id(exec_id, 'execution')}"
        answer, is_plain = _remote_waits.plain(value)
        if not is_plain:
            # A datetime, a UUID, a set...: JSON has no such value; the wait's type says
            # what it becomes (a datetime wait takes its ISO text, a str wait refuses it).
            schema = self._schema_of(path, wait)
            answer = _remote_waits.json_answer(answer, schema, wait=wait, exec_id=exec_id)
        _remote_waits.refuse_non_finite(answer, wait=wait, exec_id=exec_id)
        body = {"wait": wait, "value": answer}
        cap = self._session.server_info().get("max_input_body_bytes")
        if type(cap) is int and cap > 0:
            size = _remote_waits.body_size(body)
            if size > cap:
                raise _remote_waits.too_large(size, cap, wait=wait, exec_id=exec_id)
        return self._execution(self._session.post(f"{path}/input", body))

    def _schema_of(self, path: str, wait: str | None) -> dict[str, Any] | None:
        """The JSON schema of the pending wait ``wait`` names (the only one if None);
        None when there is no such wait (the server then says why it refuses)."""
        pending = self._session.get(f"{path}/waits")["items"]
        found = [w for w in pending if wait is None or wait in (w.get("wait_id"), w.get("name"))]
        if len(found) != 1:
            return None
        schema = found[0].get("schema")
        return schema if isinstance(schema, dict) else None

    def abort_wait(
        self, exec_id: str, *, wait: str | None = None, resume: bool = True
    ) -> Execution:
        del resume
        return self._execution(
            self._session.post(
                f"/executions/{_path_id(exec_id, 'execution')}/abort-wait", {"wait": wait}
            )
        )

    def pending_waits(self, exec_id: str | None = None) -> builtins.list[PendingWait]:
        if exec_id is None:
            waiting = self.list(status="waiting")
            return [w for e in waiting for w in e.pending_waits]
        page = self._session.get(f"/executions/{_path_id(exec_id, 'execution')}/waits")
        return [models.pending_wait(w) for w in page["items"]]

    def logs(
        self,
        exec_id: str,
        *,
        checkpoint: str | None = None,
        source: str | None = "step",
        limit: int | None = None,
        after_id: int | None = None,
    ) -> builtins.list[LogEntry]:
        _at_least_one(limit=limit)
        if source is not None and source not in LOG_SOURCES:
            raise KitaruUsageError(
                f"source= must be 'step' (checkpoint lines), 'runner' (flow body lines) or "
                f"None (both), got {source!r}."
            )
        if checkpoint is not None and source == "runner":
            raise KitaruUsageError(
                "checkpoint= selects lines of a checkpoint, which are source='step'; "
                "drop checkpoint= to read the flow body's (runner) lines."
            )
        out: builtins.list[LogEntry] = []
        after = after_id
        while limit is None or len(out) < limit:
            most = self._session.page_size(_BATCH) * 10  # log pages: 10x the row cap
            batch = most if limit is None else min(most, limit - len(out))
            page = self._session.get(
                f"/executions/{_path_id(exec_id, 'execution')}/logs",
                checkpoint=checkpoint,
                source=source or "all",
                limit=batch,
                after=after,
            )
            out.extend(models.log_entry(item) for item in page["items"])
            if len(page["items"]) < batch:
                break
            after = page["next_after"]
        return out

    def events(
        self,
        exec_id: str,
        *,
        kinds: builtins.list[str] | None = None,
        checkpoint: str | None = None,
        correlation_ids: builtins.list[str] | None = None,
        since: str | None = None,
        reconnect: bool = True,
        follow: bool = True,
    ) -> Iterator[ExecutionEvent]:
        """The execution's events from the server's SSE stream (filters applied here)."""
        from kitaru.client._events import _cursor, _strings

        kind_list = _strings(kinds, "kinds")
        correlation_list = _strings(correlation_ids, "correlation_ids")
        if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint.strip()):
            raise KitaruUsageError(
                f"events(checkpoint=...) must be a checkpoint name or call id, got {checkpoint!r}."
            )
        cursor = _cursor(since)
        full = self.get(exec_id).exec_id  # unknown ids fail now, as locally
        del reconnect
        return self._follow_events(
            full, cursor, kind_list, checkpoint, correlation_list, follow=follow
        )

    def _follow_events(
        self,
        exec_id: str,
        cursor: int,
        kinds: builtins.list[str] | None,
        checkpoint: str | None,
        correlation_ids: builtins.list[str] | None,
        *,
        follow: bool,
    ) -> Iterator[ExecutionEvent]:
        import json
        from datetime import datetime

        for kind, data in self._session.stream(
            f"/executions/{_path_id(exec_id, 'execution')}/stream",
            since=f"{cursor}.0",
            follow=str(follow).lower(),
            logs="false",
        ):
            if kind != "event":
                continue
            item = json.loads(data)
            event = ExecutionEvent(
                exec_id=item["exec_id"],
                kind=item["kind"],
                payload=item["payload"],
                correlation_id=item.get("correlation_id"),
                index=item.get("index"),
                cursor=item.get("cursor"),
                checkpoint_id=item.get("checkpoint_id"),
                checkpoint_name=item.get("checkpoint_name"),
                step_name=item.get("step_name"),
                timestamp=None
                if item.get("timestamp") is None
                else datetime.fromisoformat(item["timestamp"]),
            )
            if kinds is not None and event.kind not in kinds:
                continue
            if checkpoint is not None and checkpoint not in (
                event.checkpoint_id,
                event.checkpoint_name,
            ):
                continue
            if correlation_ids is not None and event.correlation_id not in correlation_ids:
                continue
            yield event

    def replay(
        self,
        execution: Any = None,
        *,
        at: str | None = None,
        flow_overrides: Mapping[str, Any] | None = None,
        checkpoint_overrides: Mapping[str, Any] | None = None,
        invocation_overrides: Mapping[str, Any] | None = None,
        skip: Sequence[str] | None = None,
        tag: str | None = None,
        wait: bool | None = None,
        on_error: str | None = None,
        from_: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        **flow_inputs: Any,
    ) -> ReplaySubmission:
        """Replay through the server: it plans the replays, a ``kitaru worker`` runs them.

        Same arguments as the local ``replay``; values travel as JSON. ``wait``
        (default: True for one id) waits here until each replay has finished.
        """
        from pydantic_core import to_jsonable_python

        from kitaru.client._replay import exec_refs, legacy_execution
        from kitaru.errors import execution_error_from_failure
        from kitaru.replay import (
            ReplayFailureRow,
            ReplayPlanDocument,
            ReplayResultRow,
            ReplaySkippedRow,
            ReplaySubmission,
            summarize,
        )

        refs = exec_refs(legacy_execution(execution, flow_inputs))
        if at is not None and from_ is not None and at != from_:
            raise KitaruUsageError(
                f"Pass either at= or the older from_=, not both (got at={at!r}, from_={from_!r})."
            )
        checkpoints = dict(checkpoint_overrides or {})
        for key, value in (overrides or {}).items():
            if not key.startswith("checkpoint.") or key == "checkpoint.":
                raise KitaruUsageError(
                    f"Override key {key!r} is not supported: use 'checkpoint.<name>' in "
                    "overrides=, or checkpoint_overrides={name: {'output': value}}."
                )
            checkpoints.setdefault(key.removeprefix("checkpoint."), {"output": value})
        flows = {**dict(flow_overrides or {}), **flow_inputs}
        if on_error is None:
            on_error = "fail" if len(refs) == 1 else "collect"
        if wait is None:
            wait = len(refs) == 1
        body = to_jsonable_python(
            {
                "executions": refs,
                "at": at if at is not None else from_,
                "flow_overrides": flows or None,
                "checkpoint_overrides": checkpoints or None,
                "invocation_overrides": dict(invocation_overrides or {}) or None,
                "skip": None if skip is None else ([skip] if isinstance(skip, str) else list(skip)),
                "tag": tag,
                "on_error": on_error,
            }
        )
        data = self._session.post("/replays", body)
        results: builtins.list[ReplayResultRow] = []
        for row in data["results"]:
            status = row["status"]
            if wait:
                final = self.wait(row["replay_exec_id"])
                if final.status.value != "completed" and on_error == "fail":
                    failure = final.failure.to_dict() if final.failure else None
                    raise execution_error_from_failure(
                        f"Replay {final.exec_id} of execution {row['original_exec_id']} "
                        f"{final.status.value}: {final.status_reason or 'no reason recorded'}",
                        exec_id=final.exec_id,
                        status=final.status,
                        failure=failure,
                    )
                status = "completed" if final.status.value == "completed" else "failed"
            results.append(
                ReplayResultRow(
                    row["original_exec_ref"],
                    row["original_exec_id"],
                    row["replay_exec_id"],
                    status,
                    compare_url=row.get("compare_url") or self._compare(row),
                )
            )
        failures = [
            ReplayFailureRow(r["original_exec_ref"], r.get("original_exec_id"), r["reason"])
            for r in data["failures"]
        ]
        skipped = [
            ReplaySkippedRow(r["original_exec_ref"], r.get("original_exec_id"), r["reason"])
            for r in data["skipped"]
        ]
        plan = data["plan"]
        return ReplaySubmission(
            submission_id=data["submission_id"],
            tag=data.get("tag"),
            at=data["at"],
            wait=wait,
            plan=ReplayPlanDocument(
                flow_overrides=plan.get("flow_overrides") or {},
                checkpoint_overrides=plan.get("checkpoint_overrides") or {},
                invocation_overrides=plan.get("invocation_overrides") or {},
                skip=plan.get("skip") or [],
                matched_targets=plan.get("matched_targets") or {},
            ),
            results=results,
            failures=failures,
            skipped=skipped,
            summary=summarize(results, failures, skipped),
            # One link for one replay; several have one each, on their rows.
            compare_url=data.get("compare_url")
            or (results[0].compare_url if len(results) == 1 else None),
        )

    def _compare(self, row: Mapping[str, Any]) -> str | None:
        """The dashboard link comparing a replay with its source, on this server."""
        from kitaru.analysis._compare_urls import link

        return link(self._session.connection.url, [row["original_exec_id"], row["replay_exec_id"]])

    def statistics(
        self,
        *,
        group_by: Sequence[Any] = (),
        metrics: Sequence[Any] = (),
        flow: str | None = None,
        status: Any = None,
        stack: str | None = None,
        tags: Sequence[str] | None = None,
        max_groups: int = 1000,
    ) -> ExecutionStatistics:
        from kitaru.analysis._statistics import _check_max_groups
        from kitaru.client import _remote_analysis

        return _remote_analysis.statistics(
            self._session,
            group_by=group_by,
            metrics=metrics,
            flow=flow,
            status=_statuses(status),
            stack=stack,
            tags=tags,
            max_groups=_check_max_groups(max_groups),
        )

    def cohort(self, **kwargs: Any) -> CohortQuery:
        """As on the store; ``.resolve()`` asks the server (see ``_remote_analysis``)."""
        from kitaru.analysis import cohort

        return cohort(**kwargs, client=self._client)


class RemoteArtifactsAPI:
    def __init__(self, client: KitaruClient, session: Session) -> None:
        self._client = client
        self._session = session

    def list(
        self,
        exec_id: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        producing_call: str | None = None,
        limit: int | None = None,
        type: str | None = None,
        role: str | None = None,
    ) -> builtins.list[ArtifactRef]:
        _at_least_one(limit=limit)
        path = f"/executions/{_path_id(exec_id, 'execution')}/artifacts"
        items: builtins.list[dict[str, Any]] = []
        offset: int | None = 0
        # Pages within the server's cap until ``limit`` (or the last page), as ``list``
        # of executions does: a limit above the cap is not the caller's concern.
        while offset is not None and (limit is None or len(items) < limit):
            batch = self._session.page_size(_BATCH if limit is None else limit - len(items))
            page = self._session.get(
                path,
                name=name,
                kind=kind,
                producing_call=producing_call,
                role=role,
                type=type,
                limit=batch,
                offset=offset or None,
            )
            items.extend(page["items"])
            offset = page.get("next_offset")
            if "next_offset" not in page:
                break  # an older server: one page
        refs = [models.artifact(item, self._client) for item in items]
        # An older server does not filter by type: the same filter here is a no-op otherwise.
        return [r for r in refs if type is None or r.type == type]

    def get(self, artifact_id: str) -> ArtifactRef:
        return models.artifact(
            self._session.get(f"/artifacts/{_path_id(artifact_id, 'artifact')}"), self._client
        )


def attach_remote(client: KitaruClient, server_url: str | None, auth_token: str | None) -> None:
    """Make ``client`` talk to the server given, or to the one this process is connected to."""
    from kitaru.client._remote import session_for
    from kitaru.client._remote_config import Connection, current_connection, normalize_url

    if server_url is not None and auth_token is not None:
        connection: Connection | None = Connection(
            normalize_url(server_url), auth_token, "KitaruClient(server_url=...)"
        )
    else:
        connection = current_connection()
    assert connection is not None
    session = session_for(connection)
    client._backend = RemoteBackend(session)  # type: ignore[assignment]
    client.executions = RemoteExecutionsAPI(client, session)  # type: ignore[assignment]
    client.artifacts = RemoteArtifactsAPI(client, session)  # type: ignore[assignment]
    client.connection = connection


def connected_backend() -> RemoteBackend | None:
    """A server-backed backend when this process is connected to a server, else None."""
    from kitaru.client._remote import session_for
    from kitaru.client._remote_config import current_connection

    connection = current_connection()
    return None if connection is None else RemoteBackend(session_for(connection))


def _path_id(ref: object, what: str) -> str:
    """An id as one URL path segment (checked as the local client checks it).

    No stored id is empty, ``.``, ``..`` or holds a slash; sent as a path segment, such
    an id would be rewritten (``..`` climbs a level) and reach another route. It is
    refused here as the store refuses an id it does not hold."""
    from urllib.parse import quote

    text = id_text(ref, what)
    if text.strip() in ("", ".", "..") or "/" in text or "\\" in text:
        if what == "execution":
            raise execution_not_found(
                text,
                "no execution with this id in the server's store. List executions with "
                "`kitaru executions list`.",
            )
        raise artifact_not_found(text, "no artifact with this id in the server's store.")
    return quote(text, safe="")
