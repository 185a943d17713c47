"""The options of a ``ray`` stack, validated when the stack is created.

Kept free of any ``ray`` import: creating, listing and showing ray stacks
works without the ``kitaru[ray]`` extra installed; only running on one needs it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from kitaru.errors import KitaruUsageError

#: The option names a ray stack keeps in its ``config``.
RAY_OPTIONS: Final = (
    "address",
    "artifact_store",
    "runtime_env",
    "num_cpus",
    "num_gpus",
    "resources",
)

# HOST:PORT (a GCS), or ray://HOST:PORT (Ray Client); IPv6 hosts in brackets.
_ADDRESS_RE: Final = re.compile(r"^(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")
# Names whose values Ray's runtime-env agent would print into its logs.
_SECRET_MARKERS: Final = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")


def looks_secret(name: str) -> bool:
    """True for an environment variable name that suggests a secret value."""
    upper = name.upper()
    return any(marker in upper for marker in _SECRET_MARKERS)


def ray_stack_config(
    name: str,
    *,
    address: object,
    artifact_store: object = None,
    runtime_env: object = None,
    num_cpus: object = None,
    num_gpus: object = None,
    resources: object = None,
) -> dict[str, Any]:
    """The stored config of ray stack ``name``; ``KitaruUsageError`` naming a bad option."""
    config: dict[str, Any] = {"address": _address(name, address)}
    if artifact_store is not None:
        if not isinstance(artifact_store, str) or not artifact_store.strip():
            raise KitaruUsageError(
                f"artifact_store for ray stack {name!r} must be a non-empty fsspec URL or "
                f"path (e.g. 's3://bucket/kitaru'), got {artifact_store!r}."
            )
        config["artifact_store"] = artifact_store.strip()
    env = _runtime_env(name, runtime_env)
    if env:
        config["runtime_env"] = env
    for option, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value is None:
            continue
        if not _amount(value):
            raise KitaruUsageError(
                f"{option} for ray stack {name!r} must be a finite number >= 0 (the Ray resources "
                f"each execution and isolated checkpoint asks for), got {value!r}."
            )
        config[option] = value
    custom = _resources(name, resources)
    if custom:
        config["resources"] = custom
    return config


def _resources(name: str, value: object) -> dict[str, float]:
    """Custom Ray resources ({"name": amount}) each execution and isolated call asks for."""
    if value is None:
        return {}
    value = _json_option(name, "resources", value, '{"accelerator_type:A100": 1}')
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and k not in ("CPU", "GPU") and _amount(v)
        for k, v in value.items()
    ):
        raise KitaruUsageError(
            f"resources for ray stack {name!r} must map custom Ray resource names to "
            f"finite amounts >= 0 (CPUs and GPUs go in num_cpus/num_gpus), got {value!r}."
        )
    return {str(k): v for k, v in value.items()}


def _amount(value: object) -> bool:
    """A Ray resource amount: a finite number >= 0 (NaN and Infinity are not JSON, and
    the stack's config file is)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value >= 0
    )


def _address(name: str, address: object) -> str:
    if not isinstance(address, str) or not address.strip():
        raise KitaruUsageError(
            f"A ray stack needs an address (what ray.init takes): 'auto', HOST:PORT of the "
            f"cluster's GCS, or ray://HOST:10001 for Ray Client; got {address!r} for stack "
            f"{name!r}. Example: `kitaru stack create {name} --type ray --address auto`."
        )
    value = address.strip()
    if value != "auto" and not _ADDRESS_RE.fullmatch(value):
        raise KitaruUsageError(
            f"Invalid address {value!r} for ray stack {name!r}: give 'auto', HOST:PORT "
            f"(e.g. 10.0.0.5:6379) or a Ray Client URL (ray://HOST:10001)."
        )
    return value


def _runtime_env(name: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    value = _json_option(name, "runtime_env", value, '{"pip": ["httpx"]}')
    if not isinstance(value, Mapping):
        raise KitaruUsageError(
            f"runtime_env for ray stack {name!r} must be a JSON object (a Ray runtime "
            f"environment), got {type(value).__name__}."
        )
    try:
        env: dict[str, Any] = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise KitaruUsageError(
            f"runtime_env for ray stack {name!r} must be JSON-serializable: {exc}."
        ) from None
    env_vars = env.get("env_vars")
    if env_vars is not None:
        if not isinstance(env_vars, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
        ):
            raise KitaruUsageError(
                f"runtime_env.env_vars for ray stack {name!r} must map strings to strings."
            )
        secret = sorted(k for k in env_vars if looks_secret(k))
        if secret:
            raise KitaruUsageError(
                f"runtime_env.env_vars for ray stack {name!r} sets {', '.join(secret)}, which "
                "look like secrets: Ray prints env_vars into its agent logs, so Kitaru keeps "
                "secrets out of them. Set them in the nodes' own environment, or pass them as "
                "image environment at run time (Kitaru hands secret-looking values to the "
                "execution directly, not through env_vars)."
            )
    return env


def redact_runtime_env(env: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a runtime env for records: secret-looking env_vars values replaced."""
    data: dict[str, Any] = json.loads(json.dumps(dict(env), default=str))
    env_vars = data.get("env_vars")
    if isinstance(env_vars, dict):
        data["env_vars"] = {k: "***" if looks_secret(k) else v for k, v in env_vars.items()}
    return data


__all__ = ["RAY_OPTIONS", "looks_secret", "ray_stack_config", "redact_runtime_env"]


def _json_option(name: str, option: str, value: object, example: str) -> object:
    """An option given as JSON text (CLI) or already as an object (Python)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise KitaruUsageError(
            f"{option} for ray stack {name!r} is not valid JSON ({exc}); give a JSON object "
            f"such as '{example}'."
        ) from None
