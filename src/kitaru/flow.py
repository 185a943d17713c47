"""``@flow``: the orchestration function of a durable execution."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from kitaru import _digest
from kitaru._backend import get_backend
from kitaru._filecache import one_look
from kitaru._ids import uuid4
from kitaru._limits import check_name
from kitaru._runtime import control
from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._runtime.idempotency import check_same_start, execution_ids
from kitaru._runtime.loader import flow_reference
from kitaru._runtime.signature import FlowSignature
from kitaru.config import ImageSettings, resolve_settings, validate_cache, validate_retries
from kitaru.errors import KitaruFeatureNotAvailableError, KitaruUsageError
from kitaru.handle import FlowHandle

if TYPE_CHECKING:
    import uuid

    from kitaru._backend import Backend
    from kitaru._stacks.ray import RayLaunch
    from kitaru._store import ExecutionRecord
    from kitaru.config import ResolvedSettings
    from kitaru.replay import ReplaySubmission
    from kitaru.schedules import Schedule

P = ParamSpec("P")
R = TypeVar("R")

#: Flows defined in this process, by (module, qualname): how a resume finds the code.
#: Several scripts loaded by one worker may each define ``__main__.agent``, so
#: each key keeps every definition and lookups can pick by source file.
_registry: dict[tuple[str, str], list[Flow[Any, Any]]] = {}


class Flow(Generic[P, R]):
    """A function decorated with ``@flow``. Start it with :meth:`run`."""

    def __init__(
        self,
        func: Callable[P, R],
        *,
        stack: str | None = None,
        image: Any = None,
        cache: bool | None = None,
        retries: int | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        if not callable(func):
            raise KitaruUsageError(f"@flow decorates a function, got {func!r}.")
        self.func = func
        self.name: str = check_name(getattr(func, "__name__", type(func).__name__), "flow")
        where = f"@flow for {self.name!r}"
        if stack is not None and (not isinstance(stack, str) or not stack):
            raise KitaruUsageError(f"stack= in {where} must be a stack name, got {stack!r}.")
        self._options: dict[str, Any] = {
            "stack": stack,
            "image": ImageSettings.coerce(image) if image is not None else None,
            "cache": validate_cache(cache, where=where),
            "retries": validate_retries(retries, where=where),
        }
        self._max_concurrency = _validate_concurrency(max_concurrency, where)
        #: Binds and type-checks ``.run`` arguments; its validators are built on first use.
        self.inputs = FlowSignature(func, f"flow {self.name!r}")
        self._signature = self.inputs.signature
        functools.update_wrapper(self, func)
        self.source_file = _source_file(func)
        _registry.setdefault((func.__module__, func.__qualname__), []).append(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        raise KitaruUsageError(
            f"Flow {self.name!r} cannot be called directly. Start it with "
            f"`{self.name}.run(...)`, which returns a FlowHandle at once, or "
            f"`{self.name}.run(...).wait()` to block until it finishes and get its result."
        )

    def __repr__(self) -> str:
        return f"<kitaru flow {self.name!r}>"

    def run(
        self,
        *args: Any,
        stack: str | None = None,
        image: Any = None,
        cache: bool | None = None,
        retries: int | None = None,
        max_concurrency: int | None = None,
        execution_id: str | uuid.UUID | None = None,
        **kwargs: Any,
    ) -> FlowHandle:
        """Record a new execution and start it in the background; returns at once.

        ``execution_id`` (a string of up to 255 characters, or a UUID) makes the
        start idempotent: a second ``.run()`` with the same id returns a handle to
        the execution the first one started (same flow and inputs, else an error).
        Inside another flow's body this starts a child flow, recorded as a
        durable call of the parent: a resumed parent gets the same child back.
        """
        options = {"stack": stack, "image": image, "cache": cache, "retries": retries}
        if current_execution.get() is not None and current_checkpoint.get() is None:
            from kitaru._runtime.children import start_child

            if execution_id is not None:
                raise KitaruUsageError(
                    f"execution_id= cannot be given to {self.name}.run(...) inside a flow body: "
                    "a child flow's id comes from its call in the parent, which already makes "
                    "the start happen once."
                )
            return start_child(self, args, kwargs, options, max_concurrency)
        return self.submit_execution(args, kwargs, options, max_concurrency, execution_id)

    @one_look()  # each configuration file is looked at once for this start
    def submit_execution(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
        max_concurrency: int | None,
        execution_id: str | uuid.UUID | None,
        *,
        parent_exec_id: str | None = None,
        schedule: tuple[str, float] | None = None,
    ) -> FlowHandle:
        """``.run()`` outside a flow body (also a child's start, a schedule's slot)."""
        where = f"{self.name}.run(...)"
        stack = options.get("stack")
        if stack is not None and (not isinstance(stack, str) or not stack):
            raise KitaruUsageError(f"stack= in {where} must be a stack name, got {stack!r}.")
        image = options.get("image")
        run_options = {
            "stack": stack,
            "image": ImageSettings.coerce(image) if image is not None else None,
            "cache": validate_cache(options.get("cache"), where=where),
            "retries": validate_retries(options.get("retries"), where=where),
        }
        concurrency = _validate_concurrency(max_concurrency, where) or self._max_concurrency
        key: str | None = None
        # A child's or a schedule slot's id is derived from where it was started: the
        # same id is the same start, whatever its inputs serialize to this time.
        derived = parent_exec_id if parent_exec_id is not None else schedule
        if execution_id is None:
            exec_id = uuid4()
        else:
            exec_id, key = execution_ids(execution_id, where=where)
        args, kwargs = self.inputs.validate(args, kwargs)
        settings = resolve_settings(run=run_options, decorator=self._options, flow_name=self.name)
        from kitaru._llm_frozen import frozen_llm_config

        backend = get_backend()
        if execution_id is not None:
            existing = backend.store.get_execution(exec_id)
            if existing is not None:  # started before: the same flow and inputs, or an error
                sha = None
                if derived is None:
                    packed = control.pack_inputs(
                        tuple(args),
                        kwargs,
                        what=f"The inputs of flow {self.name!r}",
                        signature=self._signature,
                        check_size=False,
                    )
                    sha = _digest.sha256(packed.serialized().data).hexdigest()
                check_same_start(
                    backend, existing, flow_name=self.name, inputs_sha=sha, given=str(execution_id)
                )
                return FlowHandle(exec_id, backend=backend)
        ref = flow_reference(self.func)
        remote = _prepare_remote(settings, backend, ref)
        inputs = control.inputs_artifact(
            backend,
            exec_id,
            args,
            kwargs,
            what=f"The inputs of flow {self.name!r}",
            signature=self._signature,
        )
        record = control.new_running_record(
            exec_id,
            flow_name=self.name,
            flow_ref=ref,
            stack=settings.stack,
            config={
                **settings.to_record(),
                "max_concurrency": concurrency,
                # Model aliases, default model and cost setting for kitaru.llm().
                "llm": frozen_llm_config(),
            },
            inputs=inputs,
            now=time.time(),
        )
        record.parent_exec_id, record.idempotency_key = parent_exec_id, key
        if schedule is not None:
            record.schedule_name, record.schedule_slot = schedule
        if remote is not None:
            record = remote.dispatch_record(record)
        if execution_id is None:
            backend.store.create_execution(record, inputs)
        else:
            stored, created = backend.store.create_execution_once(record, inputs)
            if not created:  # another process started it first, just now
                check_same_start(
                    backend,
                    stored,
                    flow_name=self.name,
                    inputs_sha=None if derived is not None else inputs.sha256,
                    given=str(execution_id),
                )
                return FlowHandle(exec_id, backend=backend)
        if remote is not None:
            _launch_remote(remote, backend, record)
            return FlowHandle(exec_id, backend=backend)
        live = control.start(backend, record, self, tuple(args), kwargs, fresh=True)
        return FlowHandle(exec_id, backend=backend, live=live)

    def schedule(
        self,
        *,
        cron: str,
        name: str | None = None,
        inputs: dict[str, Any] | None = None,
        timezone: str = "UTC",
        stack: str | None = None,
        missed: str = "skip",
    ) -> Schedule:
        """Start this flow at every slot of ``cron`` (in ``timezone``) with ``inputs``.

        ``kitaru worker`` fires the slots; ``name`` defaults to the flow's name.
        ``missed``: ``skip`` (default) or ``run_once`` for slots no worker was up for.
        """
        from kitaru.client import KitaruClient

        return KitaruClient().schedules.create(
            name or self.name,
            flow=self,
            cron=cron,
            timezone=timezone,
            inputs=inputs,
            stack=stack,
            missed=missed,
        )

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
        on_error: Literal["collect", "fail"] | None = None,
        stack: str | None = None,
        image: Any = None,
        cache: bool | None = None,
        retries: int | None = None,
        from_: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        **flow_inputs: Any,
    ) -> ReplaySubmission:
        """Replay executions of this flow from checkpoint ``at`` (see KitaruClient).

        ``stack``, ``image``, ``cache`` and ``retries`` replace the source's frozen
        settings for the replays; ``cache=True`` lets their live part use the
        cross-run cache (by default a replay runs it again).
        """
        from kitaru.client import KitaruClient
        from kitaru.client._replay import FLOW_REPLAY_KEYWORDS, submit_replay

        where = f"{self.name}.replay(...)"
        if stack is not None and (not isinstance(stack, str) or not stack):
            raise KitaruUsageError(f"stack= in {where} must be a stack name, got {stack!r}.")
        settings = {
            "stack": stack,
            "image": ImageSettings.coerce(image) if image is not None else None,
            "cache": validate_cache(cache, where=where),
            "retries": validate_retries(retries, where=where),
        }
        given: dict[str, Any] = {
            "at": at,
            "flow_overrides": flow_overrides,
            "checkpoint_overrides": checkpoint_overrides,
            "invocation_overrides": invocation_overrides,
            "skip": skip,
            "tag": tag,
            "wait": wait,
            "on_error": on_error,
            "from_": from_,
            "overrides": overrides,
        }
        executions = KitaruClient().executions
        if not hasattr(executions, "_backend"):  # recording through a Kitaru server
            return self._replay_through_server(
                executions, execution, settings, **given, **flow_inputs
            )
        return submit_replay(
            executions,
            execution,
            **given,
            flow_inputs=flow_inputs,
            settings=settings,
            expect_flow=self.name,
            keywords=FLOW_REPLAY_KEYWORDS,
        )

    def _replay_through_server(
        self,
        executions: Any,
        execution: Any,
        settings: Mapping[str, Any],
        **arguments: Any,
    ) -> ReplaySubmission:
        """``replay`` where the client talks to a Kitaru server: the server plans the
        replays and a ``kitaru worker`` runs them (see ``KitaruClient().executions``)."""
        given = sorted(name for name, value in settings.items() if value is not None)
        if given:
            raise KitaruFeatureNotAvailableError(
                f"{self.name}.replay(...) through a Kitaru server cannot change "
                f"{', '.join(given)}: the replays keep their source's settings there. Leave "
                f"{' and '.join(given)} out, or replay against the store itself."
            )
        from kitaru.client._replay import exec_refs, legacy_execution

        execution = legacy_execution(execution, arguments)  # the <=0.18 exec_id= keyword
        for ref in exec_refs(execution):
            source = executions.get(ref)
            if source.flow_name != self.name:
                raise KitaruUsageError(
                    f"Execution {source.exec_id} belongs to flow {source.flow_name!r}, not "
                    f"{self.name!r}; replay it with {source.flow_name}.replay(...) or "
                    "KitaruClient().executions.replay(...)."
                )
        submission: ReplaySubmission = executions.replay(execution, **arguments)
        return submission


def _prepare_remote(
    settings: ResolvedSettings, backend: Backend, ref: dict[str, Any]
) -> RayLaunch | None:
    """For a run on a ray stack: checks, connection and runtime env, before any write."""
    if settings.stack == "local":
        return None
    from kitaru._stacks.ray import image_for_dispatch, prepare, stack_record_for

    stack = stack_record_for(settings.stack)
    if stack is None:
        return None
    image = image_for_dispatch(settings.image_settings, settings.image)
    return prepare(stack, backend=backend, image=image, flow_ref=ref)


def _launch_remote(remote: RayLaunch, backend: Backend, record: ExecutionRecord) -> None:
    """Start the recorded execution on its cluster; if that fails, record why and raise."""
    try:
        remote.launch(record)
    except Exception as exc:
        from kitaru._store import ExecutionStatus

        backend.store.finish_execution(
            record.id,
            status=ExecutionStatus.FAILED,
            failure={"origin": "runtime", "checkpoint": None, "message": str(exc)},
            only_if_status=(ExecutionStatus.RUNNING,),
        )
        raise


def _validate_concurrency(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KitaruUsageError(
            f"max_concurrency in {where} must be a positive integer (the size of the pool "
            f"that runs .submit() calls), got {value!r}."
        )
    return value


def _source_file(func: Callable[..., Any]) -> str | None:
    try:
        path = inspect.getsourcefile(func)
    except TypeError:
        return None
    return str(Path(path).resolve()) if path else None


def find_flow(module: str, qualname: str, *, file: str | None = None) -> Flow[Any, Any] | None:
    """The newest flow defined here under that name (and in ``file``, when given)."""
    candidates: list[Flow[Any, Any]] = _registry.get((module, qualname), [])
    for candidate in reversed(candidates):
        source: str | None = candidate.source_file
        if file is None or source is None or source == file:
            return cast("Flow[Any, Any]", candidate)
    return None


@overload
def flow(func: Callable[P, R]) -> Flow[P, R]: ...


@overload
def flow(
    func: None = None,
    *,
    stack: str | None = None,
    image: Any = None,
    cache: bool | None = None,
    retries: int | None = None,
    max_concurrency: int | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    func: Callable[P, R] | None = None,
    *,
    stack: str | None = None,
    image: Any = None,
    cache: bool | None = None,
    retries: int | None = None,
    max_concurrency: int | None = None,
) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Mark a function as a durable flow; start it with ``.run(...)``."""
    if func is not None:
        return Flow(
            func,
            stack=stack,
            image=image,
            cache=cache,
            retries=retries,
            max_concurrency=max_concurrency,
        )

    def decorate(f: Callable[P, R]) -> Flow[P, R]:
        return Flow(
            f,
            stack=stack,
            image=image,
            cache=cache,
            retries=retries,
            max_concurrency=max_concurrency,
        )

    return decorate
