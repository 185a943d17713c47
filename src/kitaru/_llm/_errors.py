"""Provider errors as Kitaru errors, with credentials taken out of every message.

A provider's error text can echo the API key it was given ("Incorrect API key
provided: sk-abc…"), and an SDK exception carries the request with its
headers. So a provider error is re-raised as :class:`KitaruLlmProviderError`
with a redacted message and without the SDK exception chained (``from None``):
tracebacks recorded for the failed call hold no key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kitaru.errors import KitaruError

#: What a redacted value is replaced with.
REDACTED = "***"

# Shapes of common provider keys, redacted even when we do not know the value
# (e.g. a key the provider echoes back from an earlier request).
_KEY_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}"),  # OpenAI, Anthropic (sk-ant-…), OpenRouter (sk-or-…)
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._\-]{6,}"),
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}"),
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with each known secret value and each key-shaped token replaced."""
    for value in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    for pattern in _KEY_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class KitaruLlmProviderError(KitaruError, RuntimeError):
    """A model provider refused or failed a ``kitaru.llm()`` request.

    ``transient`` is True for failures worth retrying (rate limits, 5xx,
    timeouts, lost connections); ``kitaru.llm()`` retried those already before
    raising. The message never contains the API key.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str,
        status_code: int | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.transient = transient


#: HTTP statuses worth another attempt: timeout, conflict, rate limit, overloaded, 5xx.
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})


def is_transient(exc: BaseException) -> bool:
    """The retry predicate of LLM calls (see durable_call's ``retry_if``)."""
    return isinstance(exc, KitaruLlmProviderError) and exc.transient


def provider_error(
    exc: Exception, *, provider: str, model: str, secrets: Iterable[str | None], timeout: float
) -> KitaruLlmProviderError:
    """The Kitaru error for an exception an SDK raised (duck-typed: openai and anthropic)."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    if "Timeout" in name:
        what = f"timed out after {timeout:g} s (KITARU_LLM_TIMEOUT sets the limit)"
        transient = True
    elif "Connection" in name:
        what = f"could not be reached ({exc})"
        transient = True
    elif status is not None:
        what = f"answered HTTP {status}: {exc}"
        transient = status in _TRANSIENT_STATUS or status >= 500
    else:
        what = f"failed: {name}: {exc}"
        transient = False
    hint = ""
    if status in (401, 403):
        hint = " Check the API key (the provider's env var or the model alias's secret)."
    elif status == 404:
        hint = " Check the model name (kitaru model list shows your aliases)."
    message = f"The {provider} request for model {model!r} {what}.{hint}"
    return KitaruLlmProviderError(
        redact(message, secrets),
        provider=provider,
        model=model,
        status_code=status,
        transient=transient,
    )
