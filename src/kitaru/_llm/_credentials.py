"""Which API key a model request uses: the provider's env var, then the alias's secret.

Only the *source* of the key is ever recorded (``OPENAI_API_KEY`` or
``secret:NAME``), never the key.
"""

from __future__ import annotations

import os

from kitaru._llm._providers import Provider
from kitaru._llm._registry import ResolvedModel
from kitaru.errors import KitaruStateError, KitaruUsageError


def find_credential(provider: Provider, model: ResolvedModel) -> tuple[str | None, str | None]:
    """(key, source). Providers without keys (Ollama) get (None, None)."""
    if provider.env_var is None:
        return None, None
    value = os.environ.get(provider.env_var, "").strip()
    if value:
        return value, provider.env_var
    if model.secret:
        from kitaru.secrets import get_secret

        try:
            secret = get_secret(model.secret)
        except KitaruStateError as exc:
            if _secret_exists(model.secret):
                # It exists but cannot be read (e.g. another KITARU_SECRETS_KEY): say so,
                # re-creating it would not help.
                raise KitaruStateError(
                    f"Model {model.spec!r} (alias {model.alias!r}) needs an API key: "
                    f"{provider.env_var} is not set and the alias's secret {model.secret!r} "
                    f"cannot be read. {exc}"
                ) from exc
            raise KitaruUsageError(
                f"Model {model.spec!r} (alias {model.alias!r}) needs an API key: "
                f"{provider.env_var} is not set and the alias's secret {model.secret!r} does "
                f"not exist. Set {provider.env_var}, or create the secret: kitaru secrets set "
                f"{model.secret} --{provider.env_var}=..."
            ) from None
        values = secret.values
        key = values.get(provider.env_var) or values.get("api_key") or values.get("API_KEY")
        if key is None and len(values) == 1:
            key = next(iter(values.values()))
        if key:
            return key, f"secret:{secret.name}"
        raise KitaruUsageError(
            f"Model {model.spec!r} (alias {model.alias!r}): secret {model.secret!r} has no "
            f"{provider.env_var} or api_key value (keys: {', '.join(secret.keys)}). Set it "
            f"with kitaru secrets set {model.secret} --{provider.env_var}=..., or set the "
            f"{provider.env_var} environment variable."
        )
    where = (
        f"register the alias with a secret (kitaru model register {model.alias} --model "
        f"{model.spec} --secret NAME)"
        if model.alias
        else "use an alias registered with a secret (kitaru model register ALIAS --model "
        f"{model.spec} --secret NAME)"
    )
    raise KitaruUsageError(
        f"Model {model.spec!r} needs an API key: set the {provider.env_var} environment "
        f"variable, or {where} holding {provider.env_var} (kitaru secrets set NAME "
        f"--{provider.env_var}=...)."
    )


def _secret_exists(name_or_id: str) -> bool:
    """Whether a secret with this name or id is stored (only asked after a failed read)."""
    from kitaru.secrets import list_secrets

    return any(name_or_id in (summary.name, summary.id) for summary in list_secrets())
