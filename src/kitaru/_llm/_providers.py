"""Model providers by prefix (``openai/…``), each on its official SDK.

Ollama and OpenRouter speak the OpenAI Chat Completions protocol, so they use
the ``openai`` SDK with their own base URL. Clients are built lazily (the SDK is
imported on the first call that needs it) and kept per (key, base URL, timeout).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kitaru.errors import KitaruUsageError


@dataclass(frozen=True)
class Provider:
    name: str
    #: Which SDK and wire protocol: "openai" (Chat Completions) or "anthropic" (Messages).
    protocol: Literal["openai", "anthropic"]
    #: The env var holding the API key; None where no key is needed (Ollama).
    env_var: str | None
    #: The Kitaru extra that installs the SDK.
    extra: str
    #: The base URL (None = the SDK's default; OPENAI_BASE_URL / ANTHROPIC_BASE_URL apply).
    base_url: Callable[[], str | None]
    #: The provider id in genai-prices' table (None = no price: local models).
    price_provider: str | None


def _ollama_url() -> str:
    host = os.environ.get("OLLAMA_HOST", "").strip() or "http://localhost:11434"
    if "://" not in host:
        host = f"http://{host}"
    return host.rstrip("/") + "/v1"


def _openrouter_url() -> str:
    return os.environ.get("OPENROUTER_BASE_URL", "").strip() or "https://openrouter.ai/api/v1"


def _env_url(name: str) -> Callable[[], str | None]:
    # The SDKs read these themselves; reading them here keys the client cache on them.
    return lambda: os.environ.get(name, "").strip() or None


PROVIDERS: dict[str, Provider] = {
    "openai": Provider(
        "openai", "openai", "OPENAI_API_KEY", "openai", _env_url("OPENAI_BASE_URL"), "openai"
    ),
    "anthropic": Provider(
        "anthropic",
        "anthropic",
        "ANTHROPIC_API_KEY",
        "anthropic",
        _env_url("ANTHROPIC_BASE_URL"),
        "anthropic",
    ),
    "ollama": Provider("ollama", "openai", None, "openai", _ollama_url, None),
    "openrouter": Provider(
        "openrouter", "openai", "OPENROUTER_API_KEY", "openai", _openrouter_url, "openrouter"
    ),
}


def provider_for(model: str, *, where: str) -> tuple[Provider, str]:
    """The provider and the provider's own model name of ``provider/model``."""
    prefix, sep, name = model.partition("/")
    if not sep or not prefix or not name.strip():
        raise KitaruUsageError(
            f"{where}: model {model!r} must be 'provider/model' (e.g. 'openai/gpt-4o-mini') or "
            f"a registered alias. Supported providers: {', '.join(PROVIDERS)}."
        )
    provider = PROVIDERS.get(prefix.lower())
    if provider is None:
        raise KitaruUsageError(
            f"{where}: unknown model provider {prefix!r} in {model!r}. Supported providers: "
            f"{', '.join(p + '/' for p in PROVIDERS)}."
        )
    return provider, name.strip()


def import_sdk(provider: Provider, model: str) -> Any:
    """The provider's SDK module, or a KitaruUsageError naming the extra to install."""
    try:
        return importlib.import_module(provider.protocol)
    except ImportError:
        raise KitaruUsageError(
            f"kitaru.llm() with model {model!r} needs the {provider.protocol!r} SDK, which is "
            f"not installed. Install Kitaru's {provider.extra!r} extra (kitaru[{provider.extra}], "
            "or kitaru[llm] for every provider) from your Kitaru checkout, e.g. "
            f"pip install -e '.[{provider.extra}]', or the SDK itself: pip install "
            f"{provider.protocol}."
        ) from None


_clients: dict[tuple[str, str | None, str | None, float], Any] = {}
_clients_lock = threading.Lock()


def client_for(provider: Provider, sdk: Any, api_key: str | None, timeout: float) -> Any:
    """A cached SDK client. Its own retries are off: Kitaru retries (and records) them."""
    base_url = provider.base_url()
    key = (provider.name, api_key, base_url, timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            options: dict[str, Any] = {"max_retries": 0, "timeout": timeout}
            if base_url is not None:
                options["base_url"] = base_url
            if provider.protocol == "openai":
                client = sdk.OpenAI(api_key=api_key or "unused", **options)
            else:
                client = sdk.Anthropic(api_key=api_key, **options)
            _clients[key] = client
        return client


def forget_clients() -> None:
    """Drop cached clients (tests that change base URLs)."""
    with _clients_lock:
        _clients.clear()


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    #: The cost the provider reported (OpenRouter does), in USD.
    provider_cost: float | None
    #: The model that answered, as the provider named it.
    response_model: str | None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def send(
    provider: Provider,
    client: Any,
    model: str,
    messages: list[dict[str, Any]],
    *,
    system: str | None,
    temperature: float | None,
    max_tokens: int | None,
) -> Reply:
    """One request on the provider's SDK (exceptions are the SDK's own)."""
    if provider.protocol == "anthropic":
        return _send_anthropic(client, model, messages, system, temperature, max_tokens)
    full = ([{"role": "system", "content": system}] if system else []) + messages
    params: dict[str, Any] = {"model": model, "messages": full}
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    response = client.chat.completions.create(**params)
    text = ""
    if response.choices:
        text = response.choices[0].message.content or ""
    usage = getattr(response, "usage", None)
    extra = getattr(usage, "model_extra", None) or {}
    cost = extra.get("cost")
    return Reply(
        text=text,
        prompt_tokens=_int(getattr(usage, "prompt_tokens", None)),
        completion_tokens=_int(getattr(usage, "completion_tokens", None)),
        total_tokens=_int(getattr(usage, "total_tokens", None)),
        provider_cost=float(cost) if isinstance(cost, int | float) else None,
        response_model=getattr(response, "model", None),
    )


#: Anthropic requires max_tokens; used when the caller gives none.
ANTHROPIC_DEFAULT_MAX_TOKENS = 4096


def _send_anthropic(
    client: Any,
    model: str,
    messages: list[dict[str, Any]],
    system: str | None,
    temperature: float | None,
    max_tokens: int | None,
) -> Reply:
    # The Messages API takes the system prompt apart from the turns.
    systems = [system] if system else []
    turns = []
    for message in messages:
        if message["role"] == "system":
            systems.append(str(message["content"]))
        else:
            turns.append(message)
    params: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": max_tokens or ANTHROPIC_DEFAULT_MAX_TOKENS,
    }
    if systems:
        params["system"] = "\n\n".join(systems)
    if temperature is not None:
        params["temperature"] = temperature
    response = client.messages.create(**params)
    text = "".join(getattr(block, "text", "") for block in response.content if block.type == "text")
    usage = response.usage
    prompt = _int(getattr(usage, "input_tokens", None))
    completion = _int(getattr(usage, "output_tokens", None))
    return Reply(
        text=text,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=None if prompt is None or completion is None else prompt + completion,
        provider_cost=None,
        response_model=getattr(response, "model", None),
    )
