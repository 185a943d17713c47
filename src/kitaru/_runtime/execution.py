"""One run of a flow body: call ids, memo lookup, cache, retries, divergence.

The durability model (see DESIGN.md): the body is re-run from the top on every
resume; a checkpoint call whose call id has a recorded output returns it without
running; the first call without one goes live, and so does everything after.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from kitaru._blobs import SerializationError, fingerprint
from kitaru._runtime import tracing
from kitaru._runtime.context import CheckpointFrame, current_checkpoint
from kitaru._runtime.progress import in_flight
from kitaru._store import (
    ArtifactRecord,
    AttemptRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    StaleOwnerError,
    WaitRecord,
)
from kitaru.errors import (
    FailureOrigin,
    KitaruDivergenceError,
    KitaruUsageError,
)

if TYPE_CHECKING:
    from kitaru._backend import Backend

_MAX_BACKOFF_SECONDS = 30.0


class CheckpointSpec(Protocol):
    """What the runtime needs to know about a checkpoint (see kitaru.checkpoint)."""

    name: str
    func: Callable[..., Any]
    retries: int
    type: str | None
    runtime: str
    cache: bool | None

    def cache_prefix(self) -> str: ...


#: The ``type`` of the call rows that record flow-scope saves (not checkpoints).
SAVE_CALL_TYPE = "kitaru.save"


def _never_called() -> None:  # pragma: no cover
    return None


class _SaveSpec:
    """Stands in for a checkpoint when a flow-scope ``kitaru.save`` is recorded."""

    def __init__(self) -> None:
        self.name: str = SAVE_CALL_TYPE
        self.type: str | None = SAVE_CALL_TYPE
        self.runtime: str = "inline"
        self.retries: int = 0
        self.cache: bool | None = False
        self.func: Callable[..., Any] = _never_called

    def cache_prefix(self) -> str:  # pragma: no cover - saves are never cached
        return ""


_SAVE_SPEC = _SaveSpec()


class CancelledError(BaseException):
    """Stops the flow body at a checkpoint boundary: cancelled, or taken over.

    A BaseException (like asyncio's) so that a body's ``except Exception``
    around a checkpoint call cannot swallow it.
    """


def retry_backoff(attempt: int) -> float:
    """Seconds to sleep before attempt ``attempt + 1`` (exponential, capped).

    ``KITARU_RETRY_BACKOFF`` sets the first delay (default 0.5 s).
    """
    base = float(os.environ.get("KITARU_RETRY_BACKOFF", "0.5"))
    return float(min(base * (2 ** (attempt - 1)), _MAX_BACKOFF_SECONDS))


def code_hash(func: Callable[..., Any]) -> str:
    """A hash of a function's source, falling back to its bytecode."""
    try:
        source = textwrap.dedent(inspect.getsource(func)).encode()
    except (OSError, TypeError):
        code = getattr(func, "__code__", None)
        source = repr((code.co_code, code.co_consts)).encode() if code else repr(func).encode()
    return hashlib.sha256(source).hexdigest()


def exception_type_name(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class ExecutionContext:
    """State of one run of a flow body; lives in ``current_execution`` while it runs."""

    def __init__(
        self,
        backend: Backend,
        record: ExecutionRecord,
        *,
        run: int,
        recorded: list[CallRecord],
        cache_enabled: bool | None,
        cancel_event: threading.Event,
        overrides: dict[str, ArtifactRecord] | None = None,
        waits: list[WaitRecord] | None = None,
    ) -> None:
        self.backend = backend
        self.record = record
        self.exec_id = record.id
        self.run = run
        self.cancel_event = cancel_event
        #: Explicit execution-level cache setting (None = not set at execution level).
        self.cache_enabled = cache_enabled
        #: Replay overrides for calls that run live: returned instead of running.
        self._overrides = overrides or {}
        self._waits = {w.wait_id: w for w in waits or ()}
        self._wait_count = 0
        self._wait_ids: set[str] = set()
        self._recorded = {call.call_id: call for call in recorded}
        self._recorded_order = [call.call_id for call in recorded]
        self._consumed: set[str] = set()
        self._seen_sequence: list[tuple[str, str]] = []
        self._counts: dict[str, int] = {}
        self._used_ids: set[str] = set()
        self._next_seq = max((c.seq for c in recorded), default=0) + 1
        self._live = False
        self._lock = threading.Lock()
        #: Name of the checkpoint whose failure propagated, for the failure record.
        self.failed_checkpoint: str | None = None

    # -- call ids ---------------------------------------------------------------

    def assign_call_id(self, name: str, explicit: str | None) -> str:
        """The stable id of the next call of ``name`` (or ``explicit`` when given)."""
        with self._lock:
            if explicit is not None:
                if not isinstance(explicit, str) or not explicit:
                    raise KitaruUsageError(
                        f"id= for checkpoint {name!r} must be a non-empty string, got {explicit!r}."
                    )
                call_id = explicit
            else:
                count = self._counts.get(name, 0) + 1
                self._counts[name] = count
                call_id = name if count == 1 else f"{name}:{count}"
                # An explicit id may already have taken this automatic one.
                while call_id in self._used_ids:
                    count += 1
                    self._counts[name] = count
                    call_id = f"{name}:{count}"
            if call_id in self._used_ids:
                raise KitaruUsageError(
                    f"Checkpoint call id {call_id!r} is used twice in execution {self.exec_id}. "
                    "Give each call a distinct id= (or leave id= out to number calls by name)."
                )
            self._used_ids.add(call_id)
            self._seen_sequence.append((call_id, name))
            return call_id

    def assign_wait_id(self, name: str | None) -> str:
        """The wait's name, or wait / wait:2 / ... in the order the body reaches them."""
        with self._lock:
            if name is not None:
                if not isinstance(name, str) or not name:
                    raise KitaruUsageError(
                        f"wait(name=...) must be a non-empty string, got {name!r}."
                    )
                wait_id = name
            else:
                self._wait_count += 1
                wait_id = "wait" if self._wait_count == 1 else f"wait:{self._wait_count}"
                while wait_id in self._wait_ids:
                    self._wait_count += 1
                    wait_id = f"wait:{self._wait_count}"
            if wait_id in self._wait_ids:
                raise KitaruUsageError(
                    f"Wait {wait_id!r} is reached twice in execution {self.exec_id}. "
                    "Give each wait a distinct name=."
                )
            self._wait_ids.add(wait_id)
            return wait_id

    def log_execution_metadata(self, fields: Mapping[str, Any]) -> None:
        try:
            self.backend.store.merge_execution_metadata(
                self.exec_id, fields, fence=self.record.fence
            )
        except StaleOwnerError as exc:
            raise CancelledError(str(exc)) from None

    def save_in_body(self, name: str, value: Any, *, type: str, tags: list[str]) -> None:
        """A flow-scope ``kitaru.save``: recorded like a checkpoint call, so a resumed
        body that reaches it again does not save twice."""
        call_id = self.assign_call_id(f"save:{name}", None)
        recorded = self._recorded.get(call_id)
        if recorded is not None and recorded.status.has_output and not self._live:
            self._consumed.add(call_id)
            return
        self._go_live(call_id)
        try:
            artifact = self.backend.make_artifact(
                value,
                exec_id=self.exec_id,
                call_id=call_id,
                name=name,
                kind="saved",
                type=type,
                tags=tags,
            )
        except SerializationError as exc:
            raise KitaruUsageError(f"kitaru.save({name!r}) cannot store the value: {exc}") from None
        now = time.time()
        self._record(
            self._call_record(
                _SAVE_SPEC,
                call_id,
                CallStatus.COMPLETED,
                artifact_id=artifact.id,
                attempts=1,
                started_at=now,
                ended_at=now,
            ),
            artifact=artifact,
        )

    def recorded_wait(self, wait_id: str) -> WaitRecord | None:
        return self._waits.get(wait_id)

    # -- the checkpoint call ---------------------------------------------------------

    def call_checkpoint(
        self, spec: CheckpointSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any], call_id: str
    ) -> Any:
        attributes = {
            "kitaru.exec_id": self.exec_id,
            "kitaru.flow": self.record.flow_name,
            "kitaru.checkpoint": spec.name,
            "kitaru.call_id": call_id,
            "kitaru.run": self.run,
        }
        with tracing.span(f"kitaru.checkpoint {spec.name}", attributes):
            return self._call_checkpoint(spec, args, kwargs, call_id)

    def _call_checkpoint(
        self, spec: CheckpointSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any], call_id: str
    ) -> Any:
        self.check_cancelled()
        recorded = self._recorded.get(call_id)
        if recorded is not None and recorded.name != spec.name:
            raise self._divergence(
                f"call {call_id!r} was recorded for checkpoint {recorded.name!r} but the flow "
                f"body now calls {spec.name!r} there"
            )
        if recorded is not None and recorded.status.has_output and not self._live:
            self._consumed.add(call_id)
            assert recorded.artifact is not None
            tracing.annotate(status="memoized", recorded_status=recorded.status.value)
            return self.backend.load_value(recorded.artifact)
        self._go_live(call_id)

        override = self._overrides.get(call_id)
        if override is not None:
            now = time.time()
            self._record(
                self._call_record(
                    spec,
                    call_id,
                    CallStatus.REUSED,
                    artifact_id=override.id,
                    source_exec_id=self.record.original_exec_id,
                    attempts=0,
                    started_at=now,
                    ended_at=now,
                    metadata={"overridden": True},
                )
            )
            return self.backend.load_value(override)

        cache_key = self._cache_key(spec, args, kwargs)
        if cache_key is not None:
            hit = self._cache_lookup(cache_key)
            if hit is not None and hit.artifact is not None:
                value = self.backend.load_value(hit.artifact)
                now = time.time()
                self._record(
                    self._call_record(
                        spec,
                        call_id,
                        CallStatus.CACHED,
                        artifact_id=hit.artifact_id,
                        cache_key=None,
                        source_exec_id=hit.exec_id,
                        attempts=0,
                        started_at=now,
                        ended_at=now,
                    )
                )
                return value
        return self._run_live(spec, args, kwargs, call_id, cache_key, recorded)

    def _run_live(
        self,
        spec: CheckpointSpec,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        call_id: str,
        cache_key: str | None,
        recorded: CallRecord | None,
    ) -> Any:
        previous_attempts = 0 if recorded is None else recorded.attempts
        first_started = time.time()
        running = self._call_record(
            spec,
            call_id,
            CallStatus.RUNNING,
            attempts=previous_attempts,
            started_at=first_started,
            ended_at=None,
        )
        store, fence = self.backend.store, self.record.fence
        token = in_flight.begin(lambda: store.mark_running(running, fence=fence))
        try:
            return self._attempts(spec, args, kwargs, call_id, cache_key, previous_attempts)
        finally:
            in_flight.end(token)

    def _attempts(
        self,
        spec: CheckpointSpec,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        call_id: str,
        cache_key: str | None,
        previous_attempts: int,
    ) -> Any:
        first_started = time.time()
        attempt = 0
        metadata: dict[str, Any] = {}  # kitaru.log() fields accumulate across attempts
        while True:
            attempt += 1
            started = time.time()
            frame = CheckpointFrame(self.exec_id, call_id, spec.name, attempt, metadata)
            token = current_checkpoint.set(frame)
            try:
                value = spec.func(*args, **kwargs)
            except Exception as exc:
                ended = time.time()
                failed = AttemptRecord(
                    exec_id=self.exec_id,
                    call_id=call_id,
                    attempt=previous_attempts + attempt,
                    run=self.run,
                    status=CallStatus.FAILED.value,
                    started_at=started,
                    ended_at=ended,
                    exception_type=exception_type_name(exc),
                    message=str(exc),
                    traceback=traceback.format_exc(),
                )
                if attempt <= spec.retries:
                    self._record_attempt(failed)
                    self.cancel_event.wait(retry_backoff(attempt))
                    self.check_cancelled()
                    continue
                self._record(
                    self._call_record(
                        spec,
                        call_id,
                        CallStatus.FAILED,
                        attempts=previous_attempts + attempt,
                        started_at=first_started,
                        ended_at=ended,
                        error={
                            "exception_type": failed.exception_type,
                            "message": failed.message,
                            "traceback": failed.traceback,
                        },
                        metadata=metadata,
                    ),
                    attempt=failed,
                )
                self.failed_checkpoint = spec.name
                raise
            finally:
                current_checkpoint.reset(token)
            break

        ended = time.time()
        try:
            artifact = self.backend.make_artifact(
                value, exec_id=self.exec_id, call_id=call_id, name=spec.name, kind="output"
            )
        except SerializationError as exc:
            self.failed_checkpoint = spec.name
            message = (
                f"Checkpoint {spec.name!r} (call {call_id!r}) returned a value "
                f"Kitaru cannot store: {exc}"
            )
            self._record(
                self._call_record(
                    spec,
                    call_id,
                    CallStatus.FAILED,
                    attempts=previous_attempts + attempt,
                    started_at=first_started,
                    ended_at=ended,
                    error={"exception_type": exception_type_name(exc), "message": message},
                    metadata=metadata,
                )
            )
            raise SerializationError(message) from exc
        self._record(
            self._call_record(
                spec,
                call_id,
                CallStatus.COMPLETED,
                artifact_id=artifact.id,
                cache_key=cache_key,
                attempts=previous_attempts + attempt,
                started_at=first_started,
                ended_at=ended,
                metadata=metadata,
            ),
            artifact=artifact,
            saves=frame.saves,
            attempt=AttemptRecord(
                exec_id=self.exec_id,
                call_id=call_id,
                attempt=previous_attempts + attempt,
                run=self.run,
                status=CallStatus.COMPLETED.value,
                started_at=started,
                ended_at=ended,
            ),
        )
        return value

    def _call_record(
        self,
        spec: CheckpointSpec,
        call_id: str,
        status: CallStatus,
        *,
        artifact_id: str | None = None,
        cache_key: str | None = None,
        source_exec_id: str | None = None,
        attempts: int,
        started_at: float,
        ended_at: float | None,
        error: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> CallRecord:
        existing = self._recorded.get(call_id)
        if existing is not None:
            seq = existing.seq
        else:
            with self._lock:
                seq = self._next_seq
                self._next_seq += 1
        record = CallRecord(
            exec_id=self.exec_id,
            call_id=call_id,
            seq=seq,
            name=spec.name,
            runtime=spec.runtime,
            status=status,
            type=spec.type,
            artifact_id=artifact_id,
            cache_key=cache_key,
            source_exec_id=source_exec_id,
            attempts=attempts,
            error=error,
            metadata=metadata or {},
            started_at=started_at,
            ended_at=ended_at,
        )
        # Keep the seq stable if this call is written again (e.g. failed, then completed).
        self._recorded.setdefault(call_id, record)
        return record

    def _record(
        self,
        call: CallRecord,
        *,
        artifact: ArtifactRecord | None = None,
        attempt: AttemptRecord | None = None,
        saves: Sequence[ArtifactRecord] = (),
    ) -> None:
        """Write through the fence: a runner that lost its execution stops here."""
        tracing.annotate(status=call.status.value, attempt=call.attempts)
        try:
            self.backend.store.record_call(
                call,
                artifact=artifact,
                attempt=attempt,
                extra_artifacts=saves,
                fence=self.record.fence,
            )
        except StaleOwnerError as exc:
            raise CancelledError(str(exc)) from None

    def _record_attempt(self, attempt: AttemptRecord) -> None:
        try:
            self.backend.store.record_attempt(attempt, fence=self.record.fence)
        except StaleOwnerError as exc:
            raise CancelledError(str(exc)) from None

    # -- cache ----------------------------------------------------------------------

    def _cache_key(
        self, spec: CheckpointSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> str | None:
        enabled = self.cache_enabled
        if enabled is None:
            enabled = True if spec.cache is None else spec.cache
        if not enabled:
            return None
        inputs = fingerprint((args, dict(kwargs)))
        if inputs is None:
            return None
        return spec.cache_prefix() + inputs

    def _cache_lookup(self, key: str) -> CallRecord | None:
        # An indexed point lookup: its cost does not grow with the store's history.
        return self.backend.store.cached_output(key, exclude_exec_id=self.exec_id)

    # -- divergence and cancellation -------------------------------------------------------

    def _go_live(self, call_id: str) -> None:
        with self._lock:
            if self._live:
                return
            unreached = [
                cid
                for cid in self._recorded_order
                if cid not in self._consumed
                and cid != call_id
                and self._recorded[cid].status.has_output
            ]
            if unreached:
                raise self._divergence(
                    f"recorded call(s) {', '.join(map(repr, unreached))} were not reached "
                    f"before call {call_id!r} ran live"
                )
            self._live = True

    def _divergence(self, what: str) -> KitaruDivergenceError:
        recorded = [f"{cid} ({self._recorded[cid].name})" for cid in self._recorded_order]
        now = [f"{cid} ({name})" for cid, name in self._seen_sequence]
        return KitaruDivergenceError(
            f"Execution {self.exec_id} diverged from its recorded checkpoint calls: {what}.\n"
            f"  recorded: {', '.join(recorded) or '(none)'}\n"
            f"  now:      {', '.join(now) or '(none)'}\n"
            "The flow's code changed in a way that moves or removes completed checkpoints. "
            "Restore the previous order, pin call ids with id=, or start a new execution.",
            exec_id=self.exec_id,
            status="failed",
            failure_origin=FailureOrigin.DIVERGENCE,
        )

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise CancelledError(f"Execution {self.exec_id} was cancelled.")
