"""One run of a flow body: call ids, memo lookup, cache, retries, divergence.

The durability model (see DESIGN.md): the body is re-run from the top on every
resume; a checkpoint call whose call id has a recorded output returns it without
running; the first call without one goes live, and so does everything after.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import os
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from kitaru import _digest
from kitaru._backend import INLINE_LIMIT
from kitaru._blobs import BlobIntegrityError, SerializationError, fingerprint
from kitaru._runtime import events, logcapture, tracing
from kitaru._runtime.context import CheckpointFrame, current_checkpoint
from kitaru._runtime.failures import (
    RunnerBackendError,
    exception_type_name,
    is_backend_error,
    runner_error,
)
from kitaru._runtime.futures import CheckpointFuture, resolve_arguments
from kitaru._runtime.leases import leases
from kitaru._runtime.progress import in_flight
from kitaru._store import (
    ArtifactRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    RecordedCall,
    StaleOwnerError,
    call_inputs,
    call_outputs,
)
from kitaru._store.records import WITH_OUTPUT
from kitaru._text import printable_text, storable_text
from kitaru.errors import (
    FailureOrigin,
    KitaruDivergenceError,
    KitaruUsageError,
)

logger = logging.getLogger("kitaru")

if TYPE_CHECKING:
    import concurrent.futures

    from kitaru._backend import Backend
    from kitaru._runtime.replaying import ReplayDirectives
    from kitaru._store.records_extra import AttemptRecord, WaitRecord

_MAX_BACKOFF_SECONDS = 30.0
#: Pool size for ``.submit()`` calls of one execution (``max_concurrency`` overrides).
DEFAULT_CONCURRENCY = 16
#: The span of a checkpoint call while tracing is off (a nullcontext is reusable).
_NO_SPAN: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()


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
    return _digest.sha256(source).hexdigest()


class ExecutionContext:
    """State of one run of a flow body; lives in ``current_execution`` while it runs."""

    def __init__(
        self,
        backend: Backend,
        record: ExecutionRecord,
        *,
        run: int,
        recorded: Sequence[RecordedCall],
        cache_enabled: bool | None,
        cancel_event: threading.Event,
        replay: ReplayDirectives | None = None,
        waits: list[WaitRecord] | None = None,
    ) -> None:
        self.backend = backend
        self.record = record
        self.exec_id = record.id
        self.run = run
        self.cancel_event = cancel_event
        #: Explicit execution-level cache setting (None = not set at execution level).
        self.cache_enabled = cache_enabled
        #: What a replay changes (outputs, inputs, code of single calls); None otherwise.
        self.replay = replay
        self._replay_context: Any = None
        self._waits = {w.wait_id: w for w in waits or ()}
        self._wait_counts: dict[str, int] = {}  # waits reached so far, by name
        self._wait_ids: set[str] = set()
        #: Calls recorded by earlier runs (``RecordedCall``), and the calls this run
        #: writes (``CallRecord``); both have the fields the memo reads.
        self._recorded: dict[str, RecordedCall | CallRecord] = {
            call.call_id: call for call in recorded
        }
        self._recorded_order = list(self._recorded)
        self._consumed: set[str] = set()
        self._seen_sequence: list[tuple[str, str]] = []
        self._counts: dict[str, int] = {}
        self._used_ids: set[str] = set()
        self._next_seq = max((c.seq for c in recorded), default=0) + 1
        #: Which recorded call holds each seq: a new call whose seq another call holds
        #: (the body changed between runs) keeps its output out of its row, whose id
        #: (``<exec_id>:out:<seq>``) would then name two outputs.
        self._seq_holders = {c.seq: c.call_id for c in recorded}
        #: Order of new calls, reserved when the body makes (or submits) them, so
        #: concurrent calls are listed in call order, not in finishing order.
        self._reserved_seq: dict[str, int] = {}
        #: Calls made with .submit() or as async calls: they may finish out of order.
        self._concurrent_ids: set[str] = set()
        #: Each live call's packed arguments, for its call row (``_store.call_inputs``).
        self._inputs: dict[str, str | None] = {}
        # Read once per run: the environment lookup would cost every call.
        self._record_inputs = call_inputs.recording()
        self._live = False
        self._lock = threading.Lock()
        #: Name of the checkpoint whose failure propagated, for the failure record.
        self.failed_checkpoint: str | None = None
        #: The first store/disk failure of the runtime's own writes and reads in
        #: this run: once set, the run's failure is the backend's, whatever the
        #: body did with the exception (see _runtime.failures).
        self.backend_failure: RunnerBackendError | None = None
        self.max_concurrency = int(record.config.get("max_concurrency") or DEFAULT_CONCURRENCY)
        #: Attempt numbers earlier runs recorded per call (read once, when a later run's
        #: first call goes live; a first run has none): see ``interrupted_attempts``.
        self._attempts_before: dict[str, list[int]] | None = {} if run <= 1 else None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._futures: list[CheckpointFuture] = []

    # -- call ids ---------------------------------------------------------------

    def assign_call_id(self, name: str, explicit: str | None) -> str:
        """The stable id of the next call of ``name`` (or ``explicit`` when given)."""
        with self._lock:
            if explicit is not None:
                if not isinstance(explicit, str) or not explicit:
                    raise KitaruUsageError(
                        f"id= for checkpoint {name!r} must be a non-empty string, got {explicit!r}."
                    )
                _check_storable_id(name, explicit)
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
            if call_id not in self._recorded:
                # The call's position in the body: the same in every run of the same
                # code, so calls list in call order even after a resume.
                self._reserved_seq[call_id] = len(self._seen_sequence)
            return call_id

    def assign_wait_id(self, name: str | None) -> str:
        """The wait's id, numbered by name in the order the body reaches them, as
        checkpoint calls are: ``name``, ``name:2``, ... (``wait``, ``wait:2``, ... for
        unnamed ones). A wait in a loop asks again each time round; the same order in
        every run of the body gives a resumed run the same ids."""
        if name is not None and (not isinstance(name, str) or not name):
            raise KitaruUsageError(f"wait(name=...) must be a non-empty string, got {name!r}.")
        base = "wait" if name is None else name
        with self._lock:
            count = self._wait_counts.get(base, 0) + 1
            wait_id = base if count == 1 else f"{base}:{count}"
            while wait_id in self._wait_ids:  # taken by a wait named like that
                count += 1
                wait_id = f"{base}:{count}"
            self._wait_counts[base] = count
            self._wait_ids.add(wait_id)
            return wait_id

    # -- the runtime's own store and disk failures ---------------------------------

    def backend_failed(self, exc: Exception, what: str) -> NoReturn:
        """Re-raise ``exc``; a store or disk error as the runner's (``RunnerBackendError``).

        Call it from an ``except`` around the runtime's own store or blob work
        (``what`` says what it was doing), never around user code.
        """
        if isinstance(exc, RunnerBackendError):
            error = exc
        elif is_backend_error(exc):
            error = runner_error(self.exec_id, what, exc)
        else:
            raise exc
        with self._lock:
            if self.backend_failure is None:
                self.backend_failure = error
        if error is exc:
            raise error
        raise error from exc

    @contextlib.contextmanager
    def backend_op(self, what: str) -> Iterator[None]:
        """``backend_failed`` as a block (for paths off the checkpoint hot path)."""
        try:
            yield
        except Exception as exc:
            self.backend_failed(exc, what)

    def log_execution_metadata(self, fields: Mapping[str, Any]) -> None:
        try:
            self.backend.store.merge_execution_metadata(
                self.exec_id, fields, fence=self.record.fence
            )
        except StaleOwnerError as exc:
            raise self.lost(exc) from None
        except Exception as exc:
            self.backend_failed(exc, "record kitaru.log() metadata")

    def save_in_body(self, name: str, value: Any, *, type: str, tags: list[str]) -> None:
        """A flow-scope ``kitaru.save``: recorded like a checkpoint call, so a resumed
        body that reaches it again does not save twice."""
        call_id = self.assign_call_id(f"save:{name}", None)
        if self._reuse_or_go_live(_SAVE_SPEC, call_id) is not None:
            return  # saved by an earlier run of this body
        artifact = self.saved_artifact(name, value, call_id=call_id, type=type, tags=tags)
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
            annotate=False,
        )

    def saved_artifact(
        self, name: str, value: Any, *, call_id: str, type: str, tags: list[str]
    ) -> ArtifactRecord:
        """Serialize a ``kitaru.save`` value (written later, with its call)."""
        try:
            return self.backend.make_artifact(
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
        except Exception as exc:
            self.backend_failed(exc, f"store the value of kitaru.save({name!r})")

    def call_name(self, call_id: str) -> str | None:
        """The checkpoint name of a call this run made."""
        return next((name for cid, name in self._seen_sequence if cid == call_id), None)

    def mark_concurrent(self, call_id: str) -> None:
        """The call may finish out of order (an async call awaited with others)."""
        self._concurrent_ids.add(call_id)

    def recorded_wait(self, wait_id: str) -> WaitRecord | None:
        return self._waits.get(wait_id)

    # -- the checkpoint call ---------------------------------------------------------
    #
    # A call has two halves. ``begin_call`` runs where the body makes (or submits)
    # the call, in call order: divergence checks, the memo, going live. The rest
    # (override, cache, the live attempts) may run later on a pool thread or as a
    # coroutine, which is why call ids and the memo never depend on timing.

    def call_checkpoint(
        self, spec: CheckpointSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any], call_id: str
    ) -> Any:
        with self.checkpoint_span(spec, call_id):
            found = self.begin_call(spec, call_id)
            if found is not NOT_RECORDED:
                return found
            return self.finish_call(spec, args, kwargs, call_id)

    # -- concurrent calls -------------------------------------------------------------

    def submit(
        self,
        spec: CheckpointSpec,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        call_id: str,
        after: Sequence[CheckpointFuture] = (),
    ) -> CheckpointFuture:
        """Run a call on this execution's bounded pool; the memo is consulted now."""
        import concurrent.futures  # only flows that submit pay for it

        self._concurrent_ids.add(call_id)
        found = self.begin_call(spec, call_id)
        if found is not NOT_RECORDED:
            done: concurrent.futures.Future[Any] = concurrent.futures.Future()
            done.set_result(found)
            future = CheckpointFuture(call_id, spec.name, done, self._name_failure)
        else:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_concurrency,
                    thread_name_prefix=f"kitaru-{self.exec_id[:8]}",
                )
            # The call runs with the body's context: execution, tracing span, log capture.
            context = contextvars.copy_context()
            raw = self._pool.submit(
                context.run, self._run_submitted, spec, args, kwargs, call_id, tuple(after)
            )
            future = CheckpointFuture(call_id, spec.name, raw, self._name_failure)
        self._futures.append(future)
        return future

    def _run_submitted(
        self,
        spec: CheckpointSpec,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        call_id: str,
        after: tuple[CheckpointFuture, ...],
    ) -> Any:
        for dependency in after:
            dependency.raw.result()  # a failed dependency fails this call too
        args, resolved_kwargs = resolve_arguments(args, kwargs)
        with self.checkpoint_span(spec, call_id):
            return self.finish_call(spec, args, resolved_kwargs, call_id)

    def _name_failure(self, name: str) -> None:
        self.failed_checkpoint = name

    def settle(self, *, body_failed: bool) -> None:
        """Wait for every submitted call before the execution ends.

        A failure the body never collected fails the execution; when the body
        already failed, calls still in flight are only waited for.
        """
        try:
            for future in list(self._futures):
                error = future.raw.exception()
                if error is not None and not future.collected and not body_failed:
                    future.collected = True
                    self.failed_checkpoint = future.name
                    raise error
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def checkpoint_span(
        self, spec: CheckpointSpec, call_id: str
    ) -> contextlib.AbstractContextManager[Any]:
        """The tracing span of one checkpoint call (a no-op without the otel extra)."""
        if not tracing.enabled():
            return _NO_SPAN
        attributes = {
            "kitaru.exec_id": self.exec_id,
            "kitaru.flow": self.record.flow_name,
            "kitaru.checkpoint": spec.name,
            "kitaru.call_id": call_id,
            "kitaru.run": self.run,
        }
        return tracing.span(f"kitaru.checkpoint {spec.name}", attributes)

    def begin_call(self, spec: CheckpointSpec, call_id: str) -> Any:
        """The recorded output for ``call_id``, or NOT_RECORDED once the call is live."""
        recorded = self._reuse_or_go_live(spec, call_id)
        if recorded is None:
            return NOT_RECORDED
        tracing.annotate(status="memoized", recorded_status=str(recorded.status))
        try:
            if isinstance(recorded, RecordedCall):
                return self.backend.load_recorded(recorded)
            assert recorded.artifact is not None
            return self.backend.load_value(recorded.artifact)
        except Exception as exc:
            self.backend_failed(exc, f"load the recorded output of call {call_id!r}")

    def _reuse_or_go_live(
        self, spec: CheckpointSpec, call_id: str
    ) -> RecordedCall | CallRecord | None:
        """The recorded call whose output this call reuses; None once the call is live."""
        self.check_cancelled()
        recorded = self._recorded.get(call_id)
        if recorded is not None:
            if recorded.name != spec.name:
                raise self._divergence(
                    f"call {call_id!r} was recorded for checkpoint {recorded.name!r} but the "
                    f"flow body now calls {spec.name!r} there"
                )
            # After going live, only concurrent calls' outputs are reused: they may have
            # completed after a call that was still in flight when the runner died.
            if recorded.status in WITH_OUTPUT and (not self._live or recorded.concurrent):
                self._consumed.add(call_id)
                return recorded
        if self.replay is not None and call_id in self.replay.rerun and not self._live:
            return None  # a replay reruns it; the reused calls after it stay reused
        self._go_live(call_id)
        return None

    def _shortcut(
        self, spec: CheckpointSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any], call_id: str
    ) -> tuple[Any, str | None]:
        """A replay override or a cross-run cache hit: (value, None); else (NOT_RECORDED, key)."""
        self.check_cancelled()
        override = None if self.replay is None else self.replay.outputs.get(call_id)
        if override is not None:
            artifact, metadata = override
            now = time.time()
            self._record(
                self._call_record(
                    spec,
                    call_id,
                    CallStatus.REUSED,
                    artifact_id=artifact.id,
                    source_exec_id=self.record.original_exec_id,
                    attempts=0,
                    started_at=now,
                    ended_at=now,
                    metadata=dict(metadata),
                )
            )
            with self.backend_op(f"load the replay override of call {call_id!r}"):
                return self.backend.load_value(artifact), None
        cache_key = self._cache_key(spec, args, kwargs)
        if cache_key is not None:
            now = time.time()
            taking = self._call_record(
                spec,
                call_id,
                CallStatus.CACHED,
                attempts=0,
                started_at=now,
                ended_at=now,
                keep=False,
            )
            # Found and recorded as cached at once (one round trip on PostgreSQL).
            try:
                hit = self.backend.store.take_cached(taking, cache_key, fence=self.record.fence)
            except StaleOwnerError as exc:
                raise self.lost(exc) from None
            except Exception as exc:
                self.backend_failed(exc, f"look up the cache for call {call_id!r}")
            if hit is not None:
                self._recorded.setdefault(call_id, taking)
            if hit is not None and hit.artifact is not None:
                tracing.annotate(status=CallStatus.CACHED.value, attempt=0)
                try:
                    return self.backend.load_value(hit.artifact), None
                except BlobIntegrityError as exc:
                    # The cached output is lost (missing or damaged bytes): run the
                    # checkpoint instead; its new output replaces the cached record
                    # and repairs the blob.
                    logger.warning("Ignoring a cache hit for %r: %s", spec.name, exc)
                    return NOT_RECORDED, cache_key
                except Exception as exc:
                    self.backend_failed(exc, f"load the cached output for call {call_id!r}")
        return NOT_RECORDED, cache_key

    def finish_call(
        self, spec: CheckpointSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any], call_id: str
    ) -> Any:
        args, kwargs, func = self._replayed_call(spec, args, kwargs, call_id)
        self._note_inputs(spec, call_id, args, kwargs)
        value, cache_key = self._shortcut(spec, args, kwargs, call_id)
        if value is not NOT_RECORDED:
            return value
        live = _LiveCall(self, spec, call_id, cache_key)
        flight = live.begin_flight()
        try:
            while True:
                frame = live.next_attempt()
                token = current_checkpoint.set(frame)
                try:
                    if spec.runtime == "isolated" and func is spec.func:
                        value = _run_isolated(self, spec, args, kwargs, frame)
                    else:
                        value = func(*args, **kwargs)
                except Exception as exc:
                    if self.backend_failure is not None:
                        # The store failed under the call (e.g. kitaru.save() in it):
                        # not the user's failure, so it takes none of their retries.
                        raise
                    delay = live.failed(exc)  # raises when no retry is left
                    self.cancel_event.wait(delay)
                    continue
                finally:
                    current_checkpoint.reset(token)
                return live.succeeded(value)
        finally:
            live.end_flight(flight)

    async def finish_call_async(
        self, spec: CheckpointSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any], call_id: str
    ) -> Any:
        import asyncio

        args, kwargs, func = self._replayed_call(spec, args, kwargs, call_id)
        self._note_inputs(spec, call_id, args, kwargs)
        value, cache_key = self._shortcut(spec, args, kwargs, call_id)
        if value is not NOT_RECORDED:
            return value
        live = _LiveCall(self, spec, call_id, cache_key)
        flight = live.begin_flight()
        try:
            while True:
                frame = live.next_attempt()
                token = current_checkpoint.set(frame)
                try:
                    if spec.runtime == "isolated" and func is spec.func:
                        value = await asyncio.to_thread(
                            _run_isolated, self, spec, args, kwargs, frame
                        )
                    else:
                        value = func(*args, **kwargs)
                        if inspect.isawaitable(value):
                            value = await value
                except asyncio.CancelledError as exc:
                    live.abandoned(exc)  # e.g. a timeout or a failed gather cancelled it
                    raise
                except Exception as exc:
                    if self.backend_failure is not None:
                        raise  # the store's failure, not the user's (see finish_call)
                    delay = live.failed(exc)
                    await asyncio.sleep(delay)
                    continue
                finally:
                    current_checkpoint.reset(token)
                return live.succeeded(value)
        finally:
            live.end_flight(flight)

    def _replayed_call(
        self, spec: CheckpointSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any], call_id: str
    ) -> tuple[tuple[Any, ...], Mapping[str, Any], Callable[..., Any]]:
        """A replay's new arguments and replacement code for this call, if it has any."""
        replay = self.replay
        if replay is None:
            return args, kwargs, spec.func
        from kitaru._runtime import replaying

        artifact = replay.inputs.get(call_id)
        if artifact is not None:
            args, kwargs = replaying.new_arguments(self.backend, spec.func, artifact, args, kwargs)
        code = replay.code.get(call_id)
        func = spec.func
        if code is not None:
            func = replaying.import_code(code, where=f"The code override of call {call_id!r}")
        return args, kwargs, func

    def _note_inputs(
        self, spec: CheckpointSpec, call_id: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        """Pack the call's arguments now, before its body can change them."""
        if (not args and not kwargs) or not self._record_inputs:
            return
        named = call_inputs.named_arguments(spec.func, args, kwargs)
        self._inputs[call_id] = call_inputs.pack(named, self._put_blob, INLINE_LIMIT)

    def _put_blob(self, data: bytes) -> tuple[str, str]:
        """A large argument's bytes to the blob store (opened only when one comes)."""
        return self.backend.blobs.put(data)

    def replay_runtime_context(self) -> Any:
        """The ``kitaru.replay.ReplayRuntimeContext`` of this replayed execution."""
        if self._replay_context is None and self.replay is not None:
            from kitaru._runtime import replaying

            self._replay_context = replaying.runtime_context(self.backend, self.replay)
        return self._replay_context

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
        run: int | None = None,
        keep: bool = True,
    ) -> CallRecord:
        seq = self._seq_of(call_id)
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
            concurrent=call_id in self._concurrent_ids,
            run=run,
            inputs=self._inputs.get(call_id),
        )
        # Keep the seq stable if this call is written again (e.g. failed, then completed).
        if keep:
            self._recorded.setdefault(call_id, record)
        return record

    def _seq_of(self, call_id: str) -> int:
        """The call's position in the body (stable across its writes and runs)."""
        existing = self._recorded.get(call_id)
        if existing is not None:
            return existing.seq
        seq = self._reserved_seq.get(call_id)
        if seq is None:
            with self._lock:
                seq = self._reserved_seq.setdefault(call_id, self._next_seq)
                if seq == self._next_seq:
                    self._next_seq += 1
        return seq

    def output_id(self, call_id: str) -> str | None:
        """The id the call's output takes if it is kept in the call row, or None when
        its seq is another recorded call's (see ``_store.call_outputs``)."""
        seq = self._seq_of(call_id)
        if self._seq_holders.get(seq, call_id) != call_id:
            return None
        return call_outputs.output_id(self.exec_id, seq)

    def _record(
        self,
        call: CallRecord,
        *,
        artifact: ArtifactRecord | None = None,
        attempt: AttemptRecord | None = None,
        saves: Sequence[ArtifactRecord] = (),
        annotate: bool = True,
    ) -> None:
        """Write through the fence: a runner that lost its execution stops here."""
        if annotate:  # the current span is this call's (not so for flow-scope saves)
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
            raise self.lost(exc) from None
        except Exception as exc:
            self.backend_failed(exc, f"record checkpoint call {call.call_id!r} ({call.name})")

    def _record_attempt(self, attempt: AttemptRecord) -> None:
        try:
            self.backend.store.record_attempt(attempt, fence=self.record.fence)
        except StaleOwnerError as exc:
            raise self.lost(exc) from None
        except Exception as exc:
            self.backend_failed(exc, f"record an attempt of checkpoint call {attempt.call_id!r}")

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

    # -- divergence and cancellation -------------------------------------------------------

    def _go_live(self, call_id: str) -> None:
        if not self._live:  # once live, always live: seeing it needs no lock
            self._go_live_locked(call_id)

    def _go_live_locked(self, call_id: str) -> None:
        with self._lock:
            if self._live:  # another call went live meanwhile
                return
            unreached = [
                cid
                for cid in self._recorded_order
                if cid not in self._consumed
                and cid != call_id
                and self._recorded[cid].status in WITH_OUTPUT
                and not self._recorded[cid].concurrent
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
            + (
                # A replay reuses the source's calls before `at`; an override or new input
                # that changes the path taken before `at` lands here, not changed code.
                f"This is a replay of {self.record.original_exec_id}: calls before `at` reuse "
                "the recorded outputs, so the body must make the same calls until then. If an "
                "override or a new input changes which calls happen, replay from an earlier "
                "checkpoint (the first call whose inputs change)."
                if self.record.original_exec_id
                else "The flow's code changed in a way that moves or removes completed "
                "checkpoints. Restore the previous order, pin call ids with id=, or start a "
                "new execution."
            ),
            exec_id=self.exec_id,
            status="failed",
            failure_origin=FailureOrigin.DIVERGENCE,
        )

    def interrupted_attempts(self, call_id: str, recorded_attempts: int) -> int:
        """Failed attempts of ``call_id`` that an earlier run recorded after the call's
        own row (``recorded_attempts``): a run that died during the call's retries.
        They count against its ``retries`` when the call goes on here; a call whose
        row says it failed (a retry of the execution) starts a fresh budget instead."""
        if self._attempts_before is None:
            with self._lock:
                if self._attempts_before is None:
                    found: dict[str, list[int]] = {}
                    with self.backend_op("read the recorded attempts of checkpoint calls"):
                        for attempt in self.backend.store.attempts(self.exec_id):
                            found.setdefault(attempt.call_id, []).append(attempt.attempt)
                    self._attempts_before = found
        numbers = self._attempts_before.get(call_id)
        if not numbers:  # the usual case (a first run reads nothing): no generator
            return 0
        return max(max(numbers), recorded_attempts) - recorded_attempts

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise CancelledError(f"Execution {self.exec_id} was cancelled.")

    def check_lease(self) -> None:
        """Before live user code: stop if this runner may have lost the execution unseen
        (stopped past its lease and taken over meanwhile; see ``leases.still_held``)."""
        self.check_cancelled()
        if not leases.still_held(self.exec_id):
            raise self.lost(
                f"Execution {self.exec_id} was taken over or cancelled while this runner "
                "was stopped past its lease; it runs no more of it."
            )

    def lost(self, why: StaleOwnerError | str) -> CancelledError:
        """A write was refused: this runner no longer owns the execution (cancelled, or
        taken over). Every thread of it then stops at its next checkpoint boundary (a
        fan-out's queued calls start no body), not only the one that found out."""
        self.cancel_event.set()
        return CancelledError(str(why))


def _run_isolated(
    ctx: ExecutionContext,
    spec: CheckpointSpec,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    frame: CheckpointFrame,
) -> Any:
    # Imported on first use: subprocess and friends stay out of `import kitaru`.
    from kitaru._stacks import _ray_isolated

    if _ray_isolated.enabled():  # this process runs the execution on a ray stack
        return _ray_isolated.run_isolated_on_ray(ctx, spec, args, kwargs, frame)
    from kitaru._runtime.isolated import run_isolated

    return run_isolated(ctx, spec, args, kwargs, frame)


def _may_retry(spec: CheckpointSpec, exc: Exception) -> bool:
    """A durable call may retry only some errors (e.g. an LLM call: rate limits, 5xx)."""
    retry_if = getattr(spec, "retry_if", None)
    return retry_if is None or bool(retry_if(exc))


#: begin_call's answer when the call has no recorded output and must run.
NOT_RECORDED: Any = object()


class _LiveCall:
    """The attempts of one live checkpoint call and what they record.

    Shared by the sync and async paths: ``next_attempt`` opens an attempt,
    ``failed`` records it and returns the backoff before the next one (or
    re-raises when none is left), ``succeeded`` stores the output, the call and
    its attempt in one transaction before the body sees the value.
    """

    def __init__(
        self, ctx: ExecutionContext, spec: CheckpointSpec, call_id: str, cache_key: str | None
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.call_id = call_id
        self.cache_key = cache_key
        recorded = ctx._recorded.get(call_id)
        previous = 0 if recorded is None else recorded.attempts
        #: Attempts a run that died meanwhile made: numbered on from, and counted
        #: against the retries (the budget goes on, it does not start over).
        self.interrupted = ctx.interrupted_attempts(call_id, previous)
        self.previous = previous + self.interrupted
        self.first_started = time.time()
        self.attempt = 0
        self.started = self.first_started
        #: kitaru.log() fields accumulate across attempts of the call.
        self.metadata: dict[str, Any] = {}
        self.frame: CheckpointFrame | None = None

    def begin_flight(self) -> int:
        """Register the call in flight: if it outlasts KITARU_RUNNING_MARK_AFTER it shows
        as running (see progress). Pair with ``end_flight`` in a ``finally``."""
        ctx, spec, call_id = self.ctx, self.spec, self.call_id
        store, fence = ctx.backend.store, ctx.record.fence
        previous, started = self.previous, self.first_started

        def mark() -> None:  # only for a call that outlasts the threshold
            running = ctx._call_record(
                spec,
                call_id,
                CallStatus.RUNNING,
                attempts=previous,
                started_at=started,
                ended_at=None,
            )
            store.mark_running(running, fence=fence)

        return in_flight.begin(mark)

    def end_flight(self, token: int) -> None:
        in_flight.end(token)
        logcapture.end_call(self.ctx, self.call_id)

    def next_attempt(self) -> CheckpointFrame:
        self.ctx.check_lease()
        self.attempt += 1
        self.started = time.time()
        # The attempt number counts every run of the call, like its attempt rows.
        self.frame = CheckpointFrame(
            self.ctx.exec_id,
            self.call_id,
            self.spec.name,
            self.previous + self.attempt,
            self.metadata,
        )
        events.started(
            self.frame,
            self.ctx.backend.store,
            self.spec.type,
            run=self.ctx.run,
            fence=self.ctx.record.fence,
        )
        return self.frame

    def failed(self, exc: Exception) -> float:
        ctx, spec = self.ctx, self.spec
        events.failed(self.frame, exc)
        ended = time.time()
        from kitaru._store.records_extra import AttemptRecord

        attempt = AttemptRecord(
            exec_id=ctx.exec_id,
            call_id=self.call_id,
            attempt=self.previous + self.attempt,
            run=ctx.run,
            status=CallStatus.FAILED.value,
            started_at=self.started,
            ended_at=ended,
            exception_type=exception_type_name(exc),
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
        )
        used = self.interrupted + self.attempt
        if used <= spec.retries and _may_retry(spec, exc):
            ctx._record_attempt(attempt)
            return retry_backoff(used)
        ctx._record(
            ctx._call_record(
                spec,
                self.call_id,
                CallStatus.FAILED,
                attempts=self.previous + self.attempt,
                started_at=self.first_started,
                ended_at=ended,
                error={
                    "exception_type": attempt.exception_type,
                    "message": attempt.message,
                    "traceback": attempt.traceback,
                },
                metadata=self.metadata,
            ),
            attempt=attempt,
        )
        ctx.failed_checkpoint = spec.name
        raise exc

    def abandoned(self, exc: BaseException) -> None:
        """The call was cancelled mid-attempt (asyncio): record it as failed, don't raise."""
        ctx, spec = self.ctx, self.spec
        events.failed(self.frame, exc)
        # Best effort: the cancellation is what propagates (a store failure here is
        # still remembered on the context by _record).
        with contextlib.suppress(CancelledError, RunnerBackendError):
            ctx._record(
                ctx._call_record(
                    spec,
                    self.call_id,
                    CallStatus.FAILED,
                    attempts=self.previous + self.attempt,
                    started_at=self.first_started,
                    ended_at=time.time(),
                    error={
                        "exception_type": exception_type_name(exc),
                        "message": f"cancelled while running: {exc!r}",
                    },
                    metadata=self.metadata,
                )
            )

    def succeeded(self, value: Any) -> Any:
        ctx, spec = self.ctx, self.spec
        events.returned(self.frame)
        ended = time.time()
        try:
            artifact = ctx.backend.make_artifact(
                value,
                exec_id=ctx.exec_id,
                call_id=self.call_id,
                name=spec.name,
                kind="output",
                in_row_id=ctx.output_id(self.call_id),
            )
        except SerializationError as exc:
            ctx.failed_checkpoint = spec.name
            message = (
                f"Checkpoint {spec.name!r} (call {self.call_id!r}) returned a value "
                f"Kitaru cannot store: {exc}"
            )
            ctx._record(
                ctx._call_record(
                    spec,
                    self.call_id,
                    CallStatus.FAILED,
                    attempts=self.previous + self.attempt,
                    started_at=self.first_started,
                    ended_at=ended,
                    error={"exception_type": exception_type_name(exc), "message": message},
                    metadata=self.metadata,
                )
            )
            raise SerializationError(message) from exc
        except Exception as exc:
            ctx.backend_failed(
                exc, f"store the output of checkpoint {spec.name!r} (call {self.call_id!r})"
            )
        number = self.previous + self.attempt
        # A first attempt that completes is kept in the call row itself (``run``);
        # attempt rows are for calls that failed or were retried.
        first = number == 1
        retried: AttemptRecord | None = None
        if not first:
            from kitaru._store.records_extra import AttemptRecord

            retried = AttemptRecord(
                exec_id=ctx.exec_id,
                call_id=self.call_id,
                attempt=number,
                run=ctx.run,
                status=CallStatus.COMPLETED.value,
                started_at=self.started,
                ended_at=ended,
            )
        ctx._record(
            ctx._call_record(
                spec,
                self.call_id,
                CallStatus.COMPLETED,
                artifact_id=artifact.id,
                cache_key=self.cache_key,
                attempts=number,
                started_at=self.first_started,
                ended_at=ended,
                metadata=self.metadata,
                run=ctx.run if first else None,
            ),
            artifact=artifact,
            saves=[] if self.frame is None else self.frame.saves,
            attempt=retried,
        )
        return value


#: Longest call id the store holds (``kitaru_checkpoint_calls.call_id``).
_MAX_CALL_ID = 512


def _check_storable_id(name: str, call_id: str) -> None:
    """An explicit ``id=`` must be text the store can hold, or the call fails at its write."""
    if not storable_text(call_id):
        raise KitaruUsageError(
            f"id= for checkpoint {name!r} is not valid Unicode text "
            f"({printable_text(call_id)!r}: it holds undecodable characters); pass an id made "
            "of ordinary text."
        )
    if "\x00" in call_id:
        raise KitaruUsageError(
            f"id= for checkpoint {name!r} holds a NUL character (\\x00), which no store "
            f"keeps: got {call_id!r}. Remove it."
        )
    if len(call_id) > _MAX_CALL_ID:
        raise KitaruUsageError(
            f"id= for checkpoint {name!r} must be at most {_MAX_CALL_ID} characters, got "
            f"{len(call_id)} characters."
        )
