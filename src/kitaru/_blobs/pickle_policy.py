"""Whether values may be stored and loaded with cloudpickle (``allow_pickle``).

Values that none of the portable serializers can hold (JSON data, Pydantic models,
dataclasses, tuples of those, bytes) fall back to cloudpickle, and loading a pickled
value runs code chosen by whoever wrote it. ``allow_pickle=False`` turns that fallback
off in both directions. Precedence, highest first::

    kitaru.configure(allow_pickle=...) -> KITARU_ALLOW_PICKLE
    -> [tool.kitaru] allow_pickle in the nearest pyproject.toml -> allowed

Resolved only when a value actually needs pickle, so plain values pay nothing for it.
"""

from __future__ import annotations

from typing import Final

from kitaru.errors import KitaruUsageError

ENV_ALLOW_PICKLE: Final = "KITARU_ALLOW_PICKLE"
KEY: Final = "allow_pickle"
HOW_TO_ALLOW: Final = (
    f"{ENV_ALLOW_PICKLE}=1, kitaru.configure(allow_pickle=True) or "
    f"`{KEY} = true` under [tool.kitaru] in pyproject.toml"
)


def validate_allow_pickle(value: object, *, where: str) -> bool | None:
    """``allow_pickle`` must be True or False; None means not set."""
    if value is None or isinstance(value, bool):
        return value
    raise KitaruUsageError(f"{KEY} must be True or False, got {value!r} ({where}).")


def pickle_setting() -> tuple[bool, str]:
    """Whether pickle is allowed here, and where that was decided (for error messages)."""
    from kitaru import config
    from kitaru._pyproject import pyproject_table

    configured = config.current_configuration().allow_pickle
    if configured is not None:
        return configured, f"kitaru.configure({KEY}={configured})"
    raw = config._env(ENV_ALLOW_PICKLE)
    if raw is not None:
        if raw.lower() in config._TRUE:
            return True, f"{ENV_ALLOW_PICKLE}={raw}"
        if raw.lower() in config._FALSE:
            return False, f"{ENV_ALLOW_PICKLE}={raw}"
        raise KitaruUsageError(
            f"{ENV_ALLOW_PICKLE} must be one of true/false, 1/0, yes/no, on/off, got {raw!r}. "
            "Fix or unset the environment variable."
        )
    # strict: a broken file must not silently drop an `allow_pickle = false` in it.
    found = pyproject_table(strict=True)
    if found is not None:
        path, table = found
        value = validate_allow_pickle(table.get(KEY), where=config._pyproject_where(path, KEY))
        if value is not None:
            return value, f"`{KEY} = {str(value).lower()}` in [tool.kitaru] of {path}"
    return True, "the default"


__all__ = ["ENV_ALLOW_PICKLE", "HOW_TO_ALLOW", "pickle_setting", "validate_allow_pickle"]
