"""Replaying an execution from a checkpoint: the plan, and what the runner does with it.

A replay is always a new execution. Calls before ``at`` reuse the source's
recorded outputs (recorded up front as ``reused`` rows); ``at`` and later calls
run live. Overrides change single calls:

* ``output``: the call returns this value instead of running;
* ``input``: the call runs with these arguments instead of the body's;
* ``code``: ``"module.function"`` runs instead of a ``tool_call`` checkpoint's body;
* ``model``: the model of an ``llm_call`` checkpoint (the call runs again);
* ``skip``: a call after ``at`` reuses its recorded output instead of running.

Everything is validated, and override values are converted into the types the
checkpoint (or flow) declares or recorded, before anything is written: a refused
replay leaves the store as it was.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import time
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kitaru._blobs import SerializationError, Serialized, serialize
from kitaru._blobs.inputs import pack
from kitaru._runtime.signature import describe_type as _describe
from kitaru._runtime.signature import did_you_mean as _did_you_mean
from kitaru._store import (
    ArtifactRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
    saved_copies,
)
from kitaru._store.records import SAVED_KIND
from kitaru.errors import KitaruStateError, KitaruUsageError

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru._runtime.driver import LiveExecution
    from kitaru._store.records_extra import WaitRecord
    from kitaru.flow import Flow

#: Fields of an override entry (``model`` only for ``llm_call`` checkpoints).
ENTRY_FIELDS = ("output", "input", "code", "model")
TOOL_CALL = "tool_call"
LLM_CALL = "llm_call"
#: Call rows of flow-scope ``kitaru.save`` (not checkpoints: never selectable).
_SAVE_TYPE = "kitaru.save"
_MISSING: Any = object()
_NUMBERED = re.compile(r"^(?P<name>.+)_(?P<n>[0-9]+)$")


class UnknownSelectorError(KitaruStateError):
    """``at`` matches no recorded call (``on_error="collect"`` lists the source as skipped)."""


# -- the request -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayRequest:
    """One replay request, already checked for shape (see :func:`check_entry`)."""

    at: str
    flow_overrides: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    invocation_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    skip: Sequence[str] = ()
    tag: str | None = None
    #: ≤0.18 ``overrides={"checkpoint.<key>": value}`` / CLI ``--override``: outputs by
    #: call id or checkpoint name.
    legacy_outputs: Mapping[str, Any] = field(default_factory=dict)
    #: ≤0.18 flow inputs passed as keywords of ``replay`` itself.
    legacy_inputs: Mapping[str, Any] = field(default_factory=dict)
    #: ``stack``/``image``/``cache``/``retries`` given to ``my_flow.replay``.
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: ``my_flow.replay`` only replays executions of that flow.
    expect_flow: str | None = None
    #: Names accepted as keywords of the replay call (for "did you mean" hints).
    keywords: Sequence[str] = ()
    #: Import ``code`` overrides now to check them. The server does not: it never runs
    #: user code (importing a module runs it); the worker imports them when it runs.
    import_code: bool = True


def check_entry(entry: Any, where: str) -> dict[str, Any]:
    """An override entry's fields, or KitaruUsageError for a malformed entry."""
    if not isinstance(entry, Mapping):
        raise KitaruUsageError(
            f"{where} must be a mapping of override fields ({', '.join(ENTRY_FIELDS)}), got "
            f"{entry!r}. To replace the output write {{'output': value}}."
        )
    unknown = [key for key in entry if key not in ENTRY_FIELDS]
    if unknown:
        raise KitaruUsageError(
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; an override "
            f"entry takes {', '.join(ENTRY_FIELDS)}.{_did_you_mean(unknown[0], ENTRY_FIELDS)}"
        )
    if "input" in entry and "output" in entry:
        raise KitaruUsageError(
            f"{where} gives both 'input' and 'output': a call either runs with new inputs "
            "or returns a given output, not both."
        )
    code = entry.get("code")
    if "code" in entry and (not isinstance(code, str) or "." not in code.strip(".")):
        raise KitaruUsageError(
            f"{where}: 'code' must be 'module.function' (an importable function with the "
            f"checkpoint's signature), got {code!r}."
        )
    if "code" in entry and "output" in entry:
        raise KitaruUsageError(f"{where} gives both 'code' and 'output'; give one of them.")
    model = entry.get("model")
    if "model" in entry and (not isinstance(model, str) or not model.strip()):
        raise KitaruUsageError(f"{where}: 'model' must be a model name, got {model!r}.")
    return dict(entry)


# -- selectors --------------------------------------------------------------------------


def selectable(calls: Sequence[CallRecord]) -> list[CallRecord]:
    """The checkpoint calls (not flow-scope saves) a selector can name."""
    return [c for c in calls if c.type != _SAVE_TYPE]


def match(calls: Sequence[CallRecord], selector: str) -> list[CallRecord]:
    """Calls a selector names: an exact call id wins, then the checkpoint name.

    ``name_2`` (Kitaru 0.21's spelling of a repeated call) also finds ``name:2``.
    """
    exact = [c for c in calls if c.call_id == selector]
    if exact:
        return exact
    named = [c for c in calls if c.name == selector]
    if named:
        return named
    numbered = _NUMBERED.match(selector)
    if numbered:
        alias = f"{numbered['name']}:{numbered['n']}"
        return [c for c in calls if c.call_id == alias]
    return []


def _available(calls: Sequence[CallRecord]) -> str:
    return ", ".join(f"{c.call_id} ({c.name})" for c in calls) or "(none)"


def select_one(
    calls: Sequence[CallRecord], selector: str, *, what: str, exec_id: str
) -> CallRecord:
    """The one call ``selector`` names, or KitaruStateError (unknown or ambiguous)."""
    if not calls:
        raise UnknownSelectorError(
            f"Unknown checkpoint selector {selector!r} for {what}: execution {exec_id} has "
            "no recorded checkpoint calls. Available checkpoints: (none)."
        )
    found = match(calls, selector)
    if not found:
        raise UnknownSelectorError(
            f"Unknown checkpoint selector {selector!r} for {what} in execution {exec_id}. "
            f"Available checkpoints: {_available(calls)}."
        )
    if len(found) > 1:
        raise KitaruStateError(
            f"Checkpoint selector {selector!r} for {what} is ambiguous in execution {exec_id}: "
            f"checkpoint {selector!r} was called {len(found)} times "
            f"({', '.join(c.call_id for c in found)}). Pass one of those call ids instead."
        )
    return found[0]


# -- finding the checkpoint's code, for types ------------------------------------------


def _checkpoint_named(flow: Flow[Any, Any], name: str) -> Any:
    """The ``@checkpoint`` object called ``name`` that the flow's code uses, if found."""
    from kitaru.checkpoint import Checkpoint

    func = flow.func
    scopes: list[Mapping[str, Any]] = []
    try:
        found = inspect.getclosurevars(func)
        scopes += [found.nonlocals, found.globals]
    except (TypeError, ValueError):
        pass
    module = sys.modules.get(getattr(func, "__module__", ""))
    if module is not None:
        scopes.append(vars(module))
    for scope in scopes:
        for value in list(scope.values()):
            if isinstance(value, Checkpoint) and value.name == name:
                return value
    return None


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable string annotations: fall back to the recorded type
        return {}


def _recorded_type(backend: Backend, artifact: ArtifactRecord | None) -> Any:
    """The type of a recorded output, from how it was stored (None: plain data or unknown)."""
    if artifact is None:
        return None
    return _stored_type(
        artifact.serializer,
        artifact.type_path,
        lambda: _artifact_bytes(backend, artifact),
    )


def _artifact_bytes(backend: Backend, artifact: ArtifactRecord) -> bytes:
    if artifact.inline_data is not None:
        return artifact.inline_data
    assert artifact.uri is not None
    return backend.blobs.get(artifact.uri, artifact.sha256)


def _stored_type(serializer: str, type_path: str | None, data: Callable[[], Any]) -> Any:
    import json

    if serializer in ("pydantic", "dataclass") and type_path and ":" in type_path:
        module_name, _, qualname = type_path.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except Exception:
            return None
        return obj if isinstance(obj, type) else None
    if serializer == "tuple":
        try:
            envelopes = json.loads(data())
            items = [_item_type(env) for env in envelopes]
        except Exception:
            return tuple
        if not items:
            return tuple
        return tuple.__class_getitem__(tuple(Any if t is None else t for t in items))
    if serializer == "bytes":
        return bytearray if type_path == "builtins:bytearray" else bytes
    return None


def _item_type(envelope: dict[str, Any]) -> Any:
    import base64

    def data() -> bytes:
        return base64.b64decode(envelope["data"])

    return _stored_type(envelope["serializer"], envelope.get("type_path"), data)


def convert(value: Any, tp: Any, *, what: str) -> Any:
    """``value`` validated (and coerced, as Pydantic does) into ``tp``; else KitaruUsageError."""
    if tp is None or tp is Any or tp is inspect.Parameter.empty:
        return value
    from pydantic import TypeAdapter, ValidationError

    try:
        adapter = TypeAdapter(tp)
    except Exception:  # a type pydantic cannot validate: take the value as given
        return value
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in exc.errors()
        )
        raise KitaruUsageError(
            f"{what} does not fit type {_describe(tp)}: {problems}. Give a value of that type "
            "(or JSON that Pydantic can validate into it)."
        ) from None


# -- planning --------------------------------------------------------------------------


@dataclass
class _CallPlan:
    call: CallRecord
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    """A validated replay of one source, ready to be written and started."""

    source: ExecutionRecord
    flow: Flow[Any, Any]
    start_call: CallRecord
    matched: dict[str, list[str]]
    record: ExecutionRecord
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    inputs: ArtifactRecord
    reused: list[CallRecord]
    artifacts: list[ArtifactRecord]
    #: The source's answered waits the body reaches before ``at``, with their answers.
    waits: list[WaitRecord] = field(default_factory=list)


def _answered_before(
    store: Any, source_id: str, start_call: CallRecord, exec_id: str
) -> list[WaitRecord]:
    """The source's waits answered (or aborted) before its ``at`` call started, for the
    replay: as its reused calls do not run again, these do not ask again."""
    from dataclasses import replace

    from kitaru._store import WaitStatus

    started = start_call.started_at
    if started is None:
        return []
    done = (WaitStatus.ANSWERED, WaitStatus.ABORTED)
    return [
        replace(wait, exec_id=exec_id)
        for wait in store.waits(source_id)
        if wait.status in done and wait.created_at <= started
    ]


def _flow_inputs(
    backend: Backend, record: ExecutionRecord
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if record.inputs_artifact_id is None:
        return (), {}
    args, kwargs = backend.load_artifact(record.inputs_artifact_id)
    return tuple(args), dict(kwargs)


def prepare(backend: Backend, source_id: str, request: ReplayRequest) -> Prepared:
    """Validate a replay of ``source_id`` and build what to write; writes nothing."""
    from kitaru._runtime.control import new_running_record, pack_inputs
    from kitaru._runtime.loader import load_flow

    store = backend.store
    source = store.require_execution(source_id)
    if source.status is ExecutionStatus.RUNNING:
        raise KitaruStateError(
            f"Execution {source_id} is still running; replay it once it has finished (or "
            f"cancel it first with `kitaru executions cancel {source_id}`)."
        )
    if request.expect_flow is not None and source.flow_name != request.expect_flow:
        raise KitaruUsageError(
            f"Execution {source_id} belongs to flow {source.flow_name!r}, not "
            f"{request.expect_flow!r}; replay it with {source.flow_name}.replay(...) or "
            "KitaruClient().executions.replay(...)."
        )
    all_calls = store.calls(source_id)
    calls = selectable(all_calls)
    start_call = select_one(calls, request.at, what="at", exec_id=source_id)
    flow = load_flow(source.flow_ref, exec_id=source_id)
    signature = inspect.signature(flow.func)
    flow_changes = _flow_overrides(flow, signature, request)
    args, kwargs = _rebind(flow, signature, *_flow_inputs(backend, source), flow_changes)
    # The source's own inputs were accepted when it started; only new values are checked.
    packed = pack_inputs(
        args,
        kwargs,
        what=f"The flow inputs of the replay of execution {source_id}",
        signature=signature,
        check_size=bool(flow_changes),
    )

    plans, matched = _call_plans(calls, request, source_id)
    skipped = _skips(calls, request, source_id, plans, matched)

    # Everything is converted and serialized before any byte is written: a refused
    # replay leaves no blob behind.
    pending_outputs: list[tuple[CallRecord, Serialized]] = []
    pending_inputs: list[tuple[CallRecord, Serialized]] = []
    code_overrides: dict[str, str] = {}
    model_overrides: dict[str, str] = {}
    rerun: list[str] = []
    for plan in plans.values():
        call, entry = plan.call, plan.fields
        where = f"The override of call {call.call_id!r} (checkpoint {call.name!r})"
        spec = _checkpoint_named(flow, call.name)
        if "code" in entry:
            if call.type != TOOL_CALL:
                raise KitaruUsageError(
                    f"{where} gives 'code', but {call.name!r} is not a tool call checkpoint "
                    f"(its type is {call.type!r}); only @checkpoint(type={TOOL_CALL!r}) calls "
                    "can run replacement code."
                )
            if request.import_code:
                import_code(entry["code"], where=where)
            else:
                check_code_path(entry["code"], where=where)
            code_overrides[call.call_id] = entry["code"].strip()
        if "model" in entry:
            if call.type != LLM_CALL:
                raise KitaruUsageError(
                    f"{where} gives 'model', but {call.name!r} is not an LLM call checkpoint "
                    f"(its type is {call.type!r}); 'model' only applies to "
                    f"@checkpoint(type={LLM_CALL!r}) calls."
                )
            model_overrides[call.call_id] = entry["model"].strip()
        if "output" in entry:
            value = _convert_output(backend, spec, call, entry["output"], where=where)
            try:
                pending_outputs.append((call, serialize(value)))
            except SerializationError as exc:
                raise KitaruUsageError(f"{where}: the output cannot be stored: {exc}") from None
        if "input" in entry:
            positional, named = _convert_input(spec, entry["input"], where=where)
            try:
                pending_inputs.append((call, pack(positional, named).serialized()))
            except SerializationError as exc:
                raise KitaruUsageError(f"{where}: the new inputs cannot be stored: {exc}") from None
        if call.seq < start_call.seq and ({"input", "code", "model"} & entry.keys()):
            rerun.append(call.call_id)  # runs again although the calls around it are reused
    stack, config = _settings(source, request.settings)

    exec_id = str(uuid.uuid4())
    now = time.time()
    artifacts: list[ArtifactRecord] = []
    live_outputs: dict[str, str] = {}
    input_overrides: dict[str, str] = {}
    output_mocks: dict[str, str] = {}
    pre_outputs: dict[str, ArtifactRecord] = {}
    for call, serialized in pending_outputs:
        artifact = backend.store_serialized(
            serialized, exec_id=exec_id, call_id=call.call_id, name=call.name, kind="output"
        )
        artifacts.append(artifact)
        output_mocks[call.call_id] = artifact.id
        if call.seq < start_call.seq:
            pre_outputs[call.call_id] = artifact
        else:
            live_outputs[call.call_id] = artifact.id
    for call, serialized in pending_inputs:
        artifact = backend.store_serialized(
            serialized,
            exec_id=exec_id,
            call_id=call.call_id,
            name=f"{call.name}.replay_input",
            kind="replay_input",
        )
        artifacts.append(artifact)
        input_overrides[call.call_id] = artifact.id
    for call in skipped:
        if call.seq >= start_call.seq:
            live_outputs[call.call_id] = call.artifact_id  # type: ignore[assignment]

    reused: list[CallRecord] = []
    kept: set[str] = set()  # reused as recorded: with their metadata and saved artifacts
    for call in all_calls:
        if call.seq >= start_call.seq or call.call_id in rerun:
            continue
        metadata: dict[str, Any] = {}
        if call.call_id in pre_outputs:
            artifact_id: str | None = pre_outputs[call.call_id].id
            metadata = {"overridden": True}
        elif call.status.has_output:
            artifact_id = call.artifact_id
            metadata = dict(call.metadata)
            kept.add(call.call_id)
        else:
            continue
        reused.append(
            CallRecord(
                exec_id=exec_id,
                call_id=call.call_id,
                seq=call.seq,
                name=call.name,
                runtime=call.runtime,
                status=CallStatus.REUSED,
                type=call.type,
                artifact_id=artifact_id,
                source_exec_id=source_id,
                metadata=metadata,
                started_at=now,
                ended_at=now,
                inputs=call.inputs,  # what the source's call ran with, shown on the replay
            )
        )

    if kept:
        saved = store.list_artifacts(exec_id=source_id, kind=SAVED_KIND)
        # A replay's reused calls keep their call ids: so do their saved artifacts.
        mine = [artifact for artifact in saved if artifact.call_id in kept]
        artifacts.extend(saved_copies.copies_for(mine, exec_id=exec_id, now=now))

    from kitaru._runtime.control import store_inputs

    inputs = store_inputs(backend, exec_id, packed)
    replay_plan: dict[str, Any] = {
        "source": source_id,
        "at": start_call.call_id,
        "at_selector": request.at,
        "live_overrides": live_outputs,
        "skipped": [c.call_id for c in skipped],
        "input_overrides": input_overrides,
        "code_overrides": code_overrides,
        "model_overrides": model_overrides,
        "output_mocks": output_mocks,
        "rerun": rerun,
    }
    if request.settings.get("cache") is not None:
        replay_plan["cache"] = bool(request.settings["cache"])
    record = new_running_record(
        exec_id,
        flow_name=source.flow_name,
        flow_ref=source.flow_ref,
        stack=stack,
        config=config,
        inputs=inputs,
        now=now,
        original_exec_id=source_id,
        replay_plan=replay_plan,
    )
    if request.tag is not None:
        record.metadata = {"replay_tag": request.tag, "tags": [request.tag]}
    return Prepared(
        source=source,
        flow=flow,
        start_call=start_call,
        matched=matched,
        record=record,
        args=args,
        kwargs=kwargs,
        inputs=inputs,
        reused=reused,
        artifacts=artifacts,
        waits=_answered_before(store, source_id, start_call, exec_id),
    )


def submit(backend: Backend, prepared: Prepared) -> LiveExecution:
    """Write a prepared replay (one transaction) and start it (here, or on its ray stack)."""
    from kitaru._runtime.control import prepare_remote, start

    remote = prepare_remote(backend, prepared.record)
    record = prepared.record if remote is None else remote.dispatch_record(prepared.record)
    backend.store.create_execution(
        record,
        prepared.inputs,
        calls=prepared.reused,
        artifacts=prepared.artifacts,
        waits=prepared.waits,
    )
    if remote is not None:
        from kitaru._runtime.driver import LiveExecution

        remote.launch(record)
        return LiveExecution(record.id, fence=record.fence, flow_name=record.flow_name)
    return start(backend, record, prepared.flow, prepared.args, prepared.kwargs)


def _call_plans(
    calls: Sequence[CallRecord], request: ReplayRequest, exec_id: str
) -> tuple[dict[str, _CallPlan], dict[str, list[str]]]:
    """Override fields per call id: checkpoint level first, the invocation level wins."""
    plans: dict[str, _CallPlan] = {}
    matched: dict[str, list[str]] = {}
    levels: dict[str, dict[str, str]] = {}  # call id -> field -> level that set it

    def apply(call: CallRecord, entry: Mapping[str, Any], level: str) -> None:
        plan = plans.setdefault(call.call_id, _CallPlan(call))
        set_by = levels.setdefault(call.call_id, {})
        for key, value in entry.items():
            if level == "checkpoint" and set_by.get(key) == "invocation":
                continue
            plan.fields[key] = value
            set_by[key] = level

    known_names = sorted({c.name for c in calls})
    for name, entry in request.checkpoint_overrides.items():
        found = [c for c in calls if c.name == name] or [c for c in calls if c.call_id == name]
        if not found:
            raise KitaruStateError(
                f"checkpoint_overrides names checkpoint {name!r}, which execution {exec_id} "
                f"never called. Its checkpoints: {', '.join(known_names) or '(none)'}."
                f"{_did_you_mean(name, known_names)}"
            )
        matched[f"checkpoint:{name}"] = [c.call_id for c in found]
        for call in found:
            apply(call, entry, "checkpoint")
    for key, value in request.legacy_outputs.items():
        target = key.removeprefix("checkpoint.")
        found = match(calls, target)
        if not found:
            raise KitaruStateError(
                f"Override of {target!r} names no checkpoint call of execution {exec_id}. "
                f"Available checkpoints: {_available(calls)}."
            )
        if len(found) > 1:
            raise KitaruStateError(
                f"Override of {target!r} matches {len(found)} calls "
                f"({', '.join(c.call_id for c in found)}); name one call id."
            )
        matched[f"checkpoint:{target}"] = [found[0].call_id]
        apply(found[0], {"output": value}, "checkpoint")
    for selector, entry in request.invocation_overrides.items():
        call = select_one(calls, selector, what="invocation_overrides", exec_id=exec_id)
        matched[f"invocation:{selector}"] = [call.call_id]
        apply(call, entry, "invocation")
    for plan in plans.values():
        if "input" in plan.fields and "output" in plan.fields:
            raise KitaruUsageError(
                f"Call {plan.call.call_id!r} (checkpoint {plan.call.name!r}) gets both an "
                "'input' and an 'output' override (across checkpoint_overrides and "
                "invocation_overrides); give one of them."
            )
        if "code" in plan.fields and "output" in plan.fields:
            raise KitaruUsageError(
                f"Call {plan.call.call_id!r} (checkpoint {plan.call.name!r}) gets both a "
                "'code' and an 'output' override; give one of them."
            )
    return plans, matched


def _skips(
    calls: Sequence[CallRecord],
    request: ReplayRequest,
    exec_id: str,
    plans: Mapping[str, _CallPlan],
    matched: dict[str, list[str]],
) -> list[CallRecord]:
    skipped: list[CallRecord] = []
    for selector in request.skip:
        call = select_one(calls, selector, what="skip", exec_id=exec_id)
        if call.call_id in plans:
            raise KitaruUsageError(
                f"Call {call.call_id!r} (checkpoint {call.name!r}) is both skipped and "
                "overridden; a skipped call reuses its recorded output, so drop one of them."
            )
        if not call.status.has_output or call.artifact_id is None:
            raise KitaruStateError(
                f"skip names call {call.call_id!r} of execution {exec_id}, which has no "
                f"recorded output to reuse (it is {call.status.value})."
            )
        matched[f"skip:{selector}"] = [call.call_id]
        skipped.append(call)
    return skipped


def _convert_output(
    backend: Backend, spec: Any, call: CallRecord, value: Any, *, where: str
) -> Any:
    tp = _hints(spec.func).get("return") if spec is not None else None
    if tp is None:
        tp = _recorded_type(backend, call.artifact)
    return convert(value, tp, what=f"{where}: the output")


def _convert_input(spec: Any, value: Any, *, where: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The new arguments of a call: ``((bare,), {})`` or ``((), {param: value})``."""
    if spec is None:  # the checkpoint's code is not reachable here: bind when it runs
        if isinstance(value, Mapping):
            return (), {str(k): v for k, v in value.items()}
        return (value,), {}
    signature = inspect.signature(spec.func)
    params = [
        p
        for p in signature.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    names = [p.name for p in params]
    accepts_any = any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )
    hints = _hints(spec.func)
    if isinstance(value, Mapping) and (
        all(key in names for key in value) or accepts_any or len(names) != 1
    ):
        unknown = [key for key in value if key not in names]
        if unknown and not accepts_any:
            raise KitaruUsageError(
                f"{where}: 'input' names {', '.join(map(repr, unknown))}, which checkpoint "
                f"{spec.name!r} has no parameter for; its signature is {signature}."
                f"{_did_you_mean(str(unknown[0]), names)}"
            )
        converted = {
            key: convert(item, hints.get(key), what=f"{where}: input {key!r}")
            for key, item in value.items()
        }
        return (), converted
    if len(names) != 1:
        raise KitaruUsageError(
            f"{where}: 'input' must be a mapping {{parameter: value}} because checkpoint "
            f"{spec.name!r} takes {len(names)} parameters {signature}; a bare value is only "
            "accepted for a checkpoint with one parameter."
        )
    name = names[0]
    return (), {name: convert(value, hints.get(name), what=f"{where}: input {name!r}")}


def check_code_path(path: object, *, where: str) -> None:
    """``path`` has the form ``module.function`` (checked without importing it)."""
    module_name, _, attr = str(path).strip().rpartition(".")
    names = [*module_name.split("."), attr] if module_name else []
    if not names or not all(name.isidentifier() for name in names):
        raise KitaruUsageError(
            f"{where}: code {path!r} is not 'module.function' (dotted Python names)."
        )


def import_code(path: str, *, where: str) -> Callable[..., Any]:
    """The function ``"module.function"`` names (a checkpoint's plain function if decorated)."""
    module_name, _, attr = path.strip().rpartition(".")
    try:
        module = importlib.import_module(module_name)
        func = getattr(module, attr)
    except Exception as exc:
        raise KitaruUsageError(
            f"{where}: code {path!r} cannot be imported ({type(exc).__name__}: {exc}). Give "
            "'module.function' of a function importable here and where the flow runs."
        ) from None
    func = getattr(func, "func", func)  # a @checkpoint object: run its plain function
    if not callable(func):
        raise KitaruUsageError(f"{where}: code {path!r} is not a function.")
    return func  # type: ignore[no-any-return]


def _flow_overrides(
    flow: Flow[Any, Any], signature: inspect.Signature, request: ReplayRequest
) -> dict[str, Any]:
    """flow_overrides plus ≤0.18 keyword inputs, checked against the flow's signature."""
    params = list(signature.parameters)
    accepts_any = any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )
    for name in request.legacy_inputs:
        if name not in params and not accepts_any:
            valid = [*request.keywords, *params]
            raise KitaruUsageError(
                f"replay() got an unexpected keyword argument {name!r}: it is neither a "
                f"replay option nor a parameter of flow {flow.name!r}{signature}."
                f"{_did_you_mean(name, valid)}"
            )
    changes = {**dict(request.flow_overrides), **dict(request.legacy_inputs)}
    return flow.inputs.overrides(changes, where="flow_overrides")


def _rebind(
    flow: Flow[Any, Any],
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    changes: Mapping[str, Any],
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if not changes:
        return args, kwargs
    bound = signature.bind_partial(*args, **kwargs)
    for name, value in changes.items():
        if name in signature.parameters:
            bound.arguments[name] = value
        else:  # a flow taking **kwargs
            extra = bound.arguments.setdefault(_var_keyword(signature), {})
            extra[name] = value
    try:
        rebound = signature.bind(*bound.args, **bound.kwargs)
    except TypeError as exc:
        raise KitaruUsageError(
            f"Invalid flow inputs for the replay of {flow.name!r}: {exc}"
        ) from None
    return tuple(rebound.args), dict(rebound.kwargs)


def _var_keyword(signature: inspect.Signature) -> str:
    return next(
        p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD
    )


def _settings(source: ExecutionRecord, settings: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The source's frozen settings, with what ``my_flow.replay(stack=..., ...)`` changes."""
    config = dict(source.config)
    config["sources"] = {**config.get("sources", {}), "replay": source.id}
    given = {key: value for key, value in settings.items() if value is not None}
    if not given:
        return source.stack, config
    from kitaru.config import resolve_settings

    resolved = resolve_settings(run=given, flow_name=source.flow_name).to_record()
    for key in given:
        config[key] = resolved[key]
        config["sources"][key] = "run"
    if "stack" in given:
        config["stack_id"] = resolved["stack_id"]
    return str(config.get("stack", source.stack)), config


# -- what the runner does --------------------------------------------------------------


@dataclass
class ReplayDirectives:
    """A replay's plan as the runner uses it (see ExecutionContext)."""

    at: str
    #: Calls at/after ``at`` that return a stored value instead of running.
    outputs: dict[str, tuple[ArtifactRecord, dict[str, Any]]]
    #: Artifact of new arguments per call.
    inputs: dict[str, ArtifactRecord]
    code: dict[str, str]
    models: dict[str, str]
    #: Calls before ``at`` that run again without making the calls after them live.
    rerun: frozenset[str]
    output_mocks: dict[str, str]
    cache: bool | None


def load_directives(backend: Backend, record: ExecutionRecord) -> ReplayDirectives | None:
    plan = record.replay_plan
    if not plan:
        return None
    store = backend.store
    skipped = set(plan.get("skipped", ()))
    outputs: dict[str, tuple[ArtifactRecord, dict[str, Any]]] = {}
    for call_id, artifact_id in plan.get("live_overrides", {}).items():
        artifact = store.get_artifact(artifact_id)
        if artifact is not None:
            metadata = {"skipped": True} if call_id in skipped else {"overridden": True}
            outputs[call_id] = (artifact, metadata)
    inputs: dict[str, ArtifactRecord] = {}
    for call_id, artifact_id in plan.get("input_overrides", {}).items():
        artifact = store.get_artifact(artifact_id)
        if artifact is not None:
            inputs[call_id] = artifact
    cache = plan.get("cache")
    return ReplayDirectives(
        at=str(plan.get("at", "")),
        outputs=outputs,
        inputs=inputs,
        code=dict(plan.get("code_overrides", {})),
        models=dict(plan.get("model_overrides", {})),
        rerun=frozenset(plan.get("rerun", ())),
        output_mocks=dict(plan.get("output_mocks", {})),
        cache=None if cache is None else bool(cache),
    )


def new_arguments(
    backend: Backend,
    func: Callable[..., Any],
    artifact: ArtifactRecord,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with a replay's input override applied."""
    positional, named = backend.load_value(artifact)
    signature = inspect.signature(func)
    bound = signature.bind_partial(*args, **kwargs)
    if positional:
        first = next(iter(signature.parameters))
        bound.arguments[first] = positional[0]
    for name, value in named.items():
        if name in signature.parameters:
            bound.arguments[name] = value
        else:
            bound.arguments.setdefault(_var_keyword(signature), {})[name] = value
    return tuple(bound.args), dict(bound.kwargs)


def runtime_context(backend: Backend, directives: ReplayDirectives) -> Any:
    """The public ``ReplayRuntimeContext`` of a replay (output mocks loaded)."""
    from kitaru.replay import ReplayRuntimeContext

    mocks: dict[str, Any] = {}
    for call_id, artifact_id in directives.output_mocks.items():
        mocks[call_id] = backend.load_artifact(artifact_id)
    inputs: dict[str, Any] = {}
    for call_id, artifact in directives.inputs.items():
        positional, named = backend.load_value(artifact)
        inputs[call_id] = positional[0] if positional else dict(named)
    return ReplayRuntimeContext(
        at=directives.at,
        output_mocks=mocks,
        code_overrides=dict(directives.code),
        model_overrides=dict(directives.models),
        input_overrides=inputs,
    )
