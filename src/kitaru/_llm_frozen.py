"""What an execution freezes at submission for ``kitaru.llm()`` (see ``_llm._registry``).

Kept out of the ``kitaru._llm`` package: every ``.run()`` freezes these settings,
and importing the package (providers, the durable call path) would only slow a
script that makes no model call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kitaru import _environ

CONFIG_KEY = "models"
ENV_DEFAULT_MODEL = "KITARU_DEFAULT_MODEL"
#: The key of the frozen LLM settings in an execution's config.
FROZEN_KEY = "llm"


def _snapshot(data: Mapping[str, Any]) -> dict[str, Any]:
    section = data.get(CONFIG_KEY)
    if not isinstance(section, dict):
        return {"aliases": {}, "default": None}
    aliases = section.get("aliases")
    default = section.get("default")
    return {
        "aliases": dict(aliases) if isinstance(aliases, dict) else {},
        "default": default if isinstance(default, str) else None,
    }


def registry_snapshot() -> dict[str, Any]:
    """The user's registry as stored (``{"aliases": {...}, "default": ...}``)."""
    from kitaru._paths import read_global_config_shared

    return _snapshot(read_global_config_shared())  # a copy: the shared dict stays as read


def frozen_llm_config() -> dict[str, Any]:
    """What an execution freezes at submission for kitaru.llm() (names only)."""
    from kitaru.config import resolve_llm_estimated_costs

    frozen: dict[str, Any] = {"llm_estimated_costs": resolve_llm_estimated_costs()}
    registry = registry_snapshot()
    if registry["aliases"]:
        frozen["model_registry"] = registry
    default = _environ.get(ENV_DEFAULT_MODEL, "").strip()
    if default:
        frozen["default_model"] = default
    return frozen
