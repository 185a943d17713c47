"""Model aliases (``kitaru model register|list|remove``) and model resolution.

The registry lives in the user's global config under ``"models"``::

    {"models": {"aliases": {"fast": {"model": "openai/gpt-4o-mini", "secret": "oai"}},
                "default": "fast"}}

It is frozen into each execution at submission (with ``KITARU_DEFAULT_MODEL``
and the cost setting, see :func:`frozen_llm_config`) so that a resume, a
replay or a run on another machine resolves the same model. Only names are
stored: model ids and secret *names*, never credentials.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kitaru._llm._providers import PROVIDERS, provider_for

# What an execution freezes lives apart so that ``.run()`` does not import this package.
from kitaru._llm_frozen import CONFIG_KEY as CONFIG_KEY
from kitaru._llm_frozen import ENV_DEFAULT_MODEL as ENV_DEFAULT_MODEL
from kitaru._llm_frozen import FROZEN_KEY as FROZEN_KEY
from kitaru._llm_frozen import _snapshot as _snapshot
from kitaru._llm_frozen import frozen_llm_config as frozen_llm_config
from kitaru._llm_frozen import registry_snapshot as registry_snapshot
from kitaru.errors import KitaruStateError, KitaruUsageError

_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


@dataclass(frozen=True)
class ModelAlias:
    alias: str
    model: str
    secret: str | None
    is_default: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "model": self.model,
            "secret": self.secret,
            "is_default": self.is_default,
        }


def _aliases(registry: Mapping[str, Any]) -> list[ModelAlias]:
    default = registry.get("default")
    out = []
    for name, entry in sorted((registry.get("aliases") or {}).items()):
        if isinstance(entry, dict) and isinstance(entry.get("model"), str):
            secret = entry.get("secret")
            out.append(
                ModelAlias(
                    name,
                    entry["model"],
                    secret if isinstance(secret, str) else None,
                    name == default,
                )
            )
    return out


def list_models() -> list[ModelAlias]:
    """Registered aliases, by name."""
    return _aliases(registry_snapshot())


def _check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise KitaruUsageError(
            f"Model alias {alias!r} is not valid: use letters, digits, '_', '.' and '-' "
            "(up to 100 characters, starting with a letter or digit; no '/')."
        )
    return alias


def register_model(
    alias: str, model: str, *, secret: str | None = None, default: bool = False
) -> ModelAlias:
    """Add or replace an alias; ``default=True`` makes it the registry's default."""
    _check_alias(alias)
    if not isinstance(model, str):
        raise KitaruUsageError(f"--model must be 'provider/model', got {model!r}.")
    model = model.strip()
    provider_for(model, where=f"Model alias {alias!r}")
    if secret is not None:
        from kitaru.secrets._names import check_name

        check_name(secret)
    from kitaru._paths import update_global_config

    with update_global_config() as data:
        registry = _snapshot(data)
        registry["aliases"][alias] = {"model": model, **({"secret": secret} if secret else {})}
        if default or registry["default"] is None:
            registry["default"] = alias  # the first alias is the default until told otherwise
        data[CONFIG_KEY] = registry
    return next(a for a in _aliases(registry) if a.alias == alias)


def remove_model(alias: str) -> ModelAlias:
    """Remove an alias (the default moves to no alias when it was the default)."""
    from kitaru._paths import update_global_config

    with update_global_config() as data:
        registry = _snapshot(data)
        found = next((a for a in _aliases(registry) if a.alias == alias), None)
        if found is None:
            known = ", ".join(registry["aliases"]) or "none registered"
            raise KitaruStateError(f"No model alias {alias!r} (aliases: {known}).")
        del registry["aliases"][alias]
        if registry["default"] == alias:
            registry["default"] = None
        data[CONFIG_KEY] = registry
    return found


@dataclass(frozen=True)
class ResolvedModel:
    #: ``provider/model`` as configured.
    spec: str
    provider: str
    #: The provider's model name (``gpt-4o-mini``).
    name: str
    alias: str | None
    secret: str | None
    #: How it was chosen: "model=", "replay override", "KITARU_DEFAULT_MODEL", "registry default".
    source: str


def resolve_model(
    model: str | None, frozen: Mapping[str, Any] | None, *, override: str | None = None
) -> ResolvedModel:
    """``override`` (replay) → ``model=`` → KITARU_DEFAULT_MODEL → the registry's default alias.

    ``frozen`` is the execution's frozen LLM config (None: read the live ones).
    """
    if frozen is not None:
        registry = frozen.get("model_registry") or {"aliases": {}, "default": None}
        env_default = frozen.get("default_model")
    else:
        registry = registry_snapshot()
        env_default = os.environ.get(ENV_DEFAULT_MODEL, "").strip() or None
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise KitaruUsageError(f"kitaru.llm(model=...) must be a non-empty string, got {model!r}.")
    if override:
        chosen, source = override, "replay override"
    elif model:
        chosen, source = model.strip(), "model="
    elif env_default:
        chosen, source = env_default, ENV_DEFAULT_MODEL
    elif registry.get("default"):
        chosen, source = str(registry["default"]), "registry default"
    else:
        raise KitaruUsageError(
            "kitaru.llm() has no model: pass model='provider/model' or an alias, set "
            f"{ENV_DEFAULT_MODEL}, or register a default alias (kitaru model register ALIAS "
            f"--model openai/gpt-4o-mini --default). Providers: {', '.join(PROVIDERS)}."
        )
    aliases = registry.get("aliases") or {}
    entry = aliases.get(chosen)
    if isinstance(entry, dict) and isinstance(entry.get("model"), str):
        spec = entry["model"]
        provider, name = provider_for(spec, where=f"Model alias {chosen!r}")
        secret = entry.get("secret")
        return ResolvedModel(
            spec, provider.name, name, chosen, secret if isinstance(secret, str) else None, source
        )
    if "/" not in chosen:
        known = ", ".join(sorted(aliases)) or "none registered"
        raise KitaruUsageError(
            f"Model {chosen!r} (from {source}) is neither 'provider/model' nor a registered "
            f"alias (aliases: {known}). Supported providers: {', '.join(PROVIDERS)}."
        )
    provider, name = provider_for(chosen, where=f"Model {chosen!r} (from {source})")
    return ResolvedModel(f"{provider.name}/{name}", provider.name, name, None, None, source)
