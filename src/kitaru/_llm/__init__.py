"""``kitaru.llm()``: one model request as a durable, costed call.

The package is private (``kitaru._llm``) because the public name ``kitaru.llm``
is the function: a ``kitaru/llm/`` package would be bound over it by the
import system as soon as one of its modules is imported.

Layers: ``_registry`` resolves the model (alias, default), ``_credentials``
finds the key, ``_providers`` sends the request on the provider's SDK,
``_errors`` turns SDK exceptions into redacted Kitaru errors, ``_costs``
prices the usage. The durable part is ``kitaru._runtime.durable_call``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from kitaru._llm._errors import KitaruLlmProviderError, is_transient, provider_error
from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._runtime.durable_call import LLM_CALL, durable_call, elapsed_ms, replay_model_override
from kitaru._runtime.usage import LlmUsage, record_llm_usage
from kitaru.errors import KitaruContextError, KitaruUsageError

ENV_MOCK = "KITARU_LLM_MOCK_RESPONSE"
ENV_TIMEOUT = "KITARU_LLM_TIMEOUT"
ENV_RETRIES = "KITARU_LLM_RETRIES"
DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 3
ROLES = ("system", "user", "assistant")


def normalize_prompt(prompt: object) -> list[dict[str, Any]]:
    """A prompt as chat messages; a bad shape is a KitaruUsageError naming the problem."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise KitaruUsageError("kitaru.llm() needs a non-empty prompt.")
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list | tuple) or not prompt:
        raise KitaruUsageError(
            "kitaru.llm(prompt) takes a string or a non-empty list of messages like "
            f"[{{'role': 'user', 'content': '...'}}], got {type(prompt).__name__}."
        )
    messages = []
    for index, message in enumerate(prompt):
        if not isinstance(message, Mapping):
            raise KitaruUsageError(
                f"kitaru.llm(prompt): message {index} must be a dict with 'role' and "
                f"'content', got {type(message).__name__}."
            )
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise KitaruUsageError(
                f"kitaru.llm(prompt): message {index} has role {role!r}; use one of "
                f"{', '.join(ROLES)}."
            )
        if not isinstance(content, str):
            raise KitaruUsageError(
                f"kitaru.llm(prompt): message {index} needs 'content' as a string, got "
                f"{type(content).__name__}."
            )
        messages.append({"role": role, "content": content})
    return messages


def _number(name: str, value: object, *, integer: bool) -> Any:
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
        what = "a positive int" if integer else "a number >= 0"
        raise KitaruUsageError(f"kitaru.llm({name}=...) must be {what}, got {value!r}.")
    if integer and value == 0:
        raise KitaruUsageError(f"kitaru.llm({name}=...) must be a positive int, got 0.")
    return value


def _env_number(name: str, default: float, *, integer: bool) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return int(default) if integer else default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if value < 0 or (not integer and value == 0):
        raise KitaruUsageError(f"{name} must be a number > 0 (retries: >= 0), got {raw!r}.")
    return value


def llm(
    prompt: str | list[dict[str, Any]],
    *,
    model: str | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    name: str | None = None,
) -> str:
    """Ask a model; returns its text reply. A durable call in a flow body.

    ``model`` is ``provider/model`` (``openai/``, ``anthropic/``, ``ollama/``,
    ``openrouter/``) or an alias from ``kitaru model register``; without it,
    ``KITARU_DEFAULT_MODEL`` and then the registry's default alias are used.
    In a flow body the call is recorded like a checkpoint (call ids ``llm``,
    ``llm:2``, … or ``name``): a resume returns the recorded reply without a
    request. Inside a checkpoint it runs inline and is recorded on that
    checkpoint. Transient provider errors (rate limits, 5xx, timeouts) are
    retried (``KITARU_LLM_RETRIES``, default 3) and recorded as attempts.
    """
    if current_execution.get() is None:
        raise KitaruContextError(
            "kitaru.llm() was called outside a running flow. Call it from a @flow "
            "function's body or a checkpoint (set KITARU_LLM_MOCK_RESPONSE in tests to "
            "answer without a provider)."
        )
    messages = normalize_prompt(prompt)
    if system is not None and not isinstance(system, str):
        raise KitaruUsageError(f"kitaru.llm(system=...) must be a string, got {system!r}.")
    _number("temperature", temperature, integer=False)
    _number("max_tokens", max_tokens, integer=True)
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise KitaruUsageError(f"kitaru.llm(model=...) must be a non-empty string, got {model!r}.")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise KitaruUsageError(f"kitaru.llm(name=...) must be a non-empty string, got {name!r}.")
    call_name = name.strip() if name else "llm"
    retries = _env_number(ENV_RETRIES, DEFAULT_RETRIES, integer=True)
    return durable_call(
        _llm_call,
        (messages,),
        {
            "model": model,
            "system": system,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "name": call_name,
            # Inside a checkpoint the call is not a call of its own (see _finish).
            "inline": current_checkpoint.get() is not None,
        },
        name=call_name,
        call_type=LLM_CALL,
        retries=retries,
        retry_if=is_transient,
    )


def _llm_call(
    prompt: str | list[dict[str, Any]],
    model: str | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    name: str = "llm",
    inline: bool = False,
) -> str:
    """The body of the durable call: runs only when there is no recorded reply."""
    from kitaru._llm._credentials import find_credential
    from kitaru._llm._providers import PROVIDERS, client_for, import_sdk, send
    from kitaru._llm._registry import FROZEN_KEY, resolve_model

    ctx = current_execution.get()
    assert ctx is not None
    messages = normalize_prompt(prompt)  # a replay's input override may be a plain string
    frozen = ctx.record.config.get(FROZEN_KEY)
    frozen = frozen if isinstance(frozen, dict) else None
    mock = os.environ.get(ENV_MOCK)
    if mock is not None:
        try:
            resolved: Any = resolve_model(model, frozen, override=replay_model_override())
            spec, provider_name = resolved.spec, resolved.provider
        except KitaruUsageError:
            spec, provider_name = model or "mock", "mock"
        _finish(
            name,
            inline,
            messages,
            mock,
            {
                "model": spec,
                "provider": provider_name,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "total_tokens": 0,
                "cost_usd": None,
                "cost_source": None,
                "latency_ms": 0.0,
                "credential_source": None,
                "mocked": True,
            },
        )
        return mock
    resolved = resolve_model(model, frozen, override=replay_model_override())
    provider = PROVIDERS[resolved.provider]
    sdk = import_sdk(provider, resolved.spec)
    api_key, credential_source = find_credential(provider, resolved)
    timeout = _env_number(ENV_TIMEOUT, DEFAULT_TIMEOUT, integer=False)
    client = client_for(provider, sdk, api_key, timeout)
    started = time.perf_counter()
    try:
        reply = send(
            provider,
            client,
            resolved.name,
            messages,
            system=system,
            temperature=temperature,
            max_tokens=max_tokens,
        )
    except Exception as exc:
        raise provider_error(
            exc, provider=provider.name, model=resolved.spec, secrets=[api_key], timeout=timeout
        ) from None
    latency = elapsed_ms(started)
    from kitaru._llm._costs import estimate

    mode = (frozen or {}).get("llm_estimated_costs")
    if mode is None:
        from kitaru.config import resolve_llm_estimated_costs

        mode = resolve_llm_estimated_costs()
    cost, cost_source = estimate(
        price_provider=provider.price_provider,
        model=resolved.name,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        provider_cost=reply.provider_cost,
        mode=str(mode),
    )
    usage: LlmUsage = {
        "model": resolved.spec,
        "provider": provider.name,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.total_tokens,
        "cost_usd": cost,
        "cost_source": cost_source,
        "latency_ms": latency,
        "credential_source": credential_source,
        "alias": resolved.alias,
    }
    _finish(name, inline, messages, reply.text, usage)
    return reply.text


def _finish(
    name: str, inline: bool, messages: list[dict[str, Any]], text: str, usage: LlmUsage
) -> None:
    """Record usage and the prompt/response artifacts on the running call."""
    from kitaru.artifacts import save

    frame = current_checkpoint.get()
    assert frame is not None
    record_llm_usage(usage)
    if not inline:
        # The call's output is the response (kind "response"); keep the prompt beside it.
        save(f"{frame.call_id}.prompt", messages, type="prompt")
        return
    count = len(frame.metadata.get("llm_usage") or [])
    label = f"{frame.call_id}/{name}" + (f":{count}" if count > 1 else "")
    save(f"{label}.prompt", messages, type="prompt")
    save(f"{label}.response", text, type="response")


__all__ = ["KitaruLlmProviderError", "llm", "normalize_prompt"]
