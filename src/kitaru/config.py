"""Configuration: image settings, ``configure()``, and settings resolution.

Precedence for ``stack``, ``cache``, ``retries`` and ``image``, highest first::

    .run(...) -> @flow(...) -> kitaru.configure(...) -> KITARU_* env vars
    -> [tool.kitaru] in the nearest pyproject.toml -> persisted active stack
    -> built-ins (stack="local", cache=True, retries=0, image=None)

:func:`resolve_settings` computes the values for one submission without touching
any global state; the result is frozen into the execution record so that a
resume or replay runs with the same settings.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeAlias

from kitaru import _environ
from kitaru._pyproject import clear_cache as clear_pyproject_cache
from kitaru._pyproject import find_pyproject, pyproject_table
from kitaru.errors import KitaruUsageError


class _Unset(Enum):
    """Sentinel type: "argument not passed" (None means "clear this setting")."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset.UNSET

ENV_STACK: Final = "KITARU_STACK"
ENV_CACHE: Final = "KITARU_CACHE"
ENV_RETRIES: Final = "KITARU_RETRIES"
ENV_IMAGE: Final = "KITARU_IMAGE"
ENV_STORE_URL: Final = "KITARU_STORE_URL"
ENV_ARTIFACTS_ROOT: Final = "KITARU_ARTIFACTS_ROOT"
ENV_LLM_ESTIMATED_COSTS: Final = "KITARU_LLM_ESTIMATED_COSTS"

DEFAULT_STACK: Final = "local"
DEFAULT_CACHE: Final = True
DEFAULT_RETRIES: Final = 0
LLM_ESTIMATED_COSTS_VALUES: Final = ("auto", "off")


def _in(where: str | None) -> str:
    return f" ({where})" if where else ""


def _add_where(message: str, where: str | None) -> str:
    """Insert the call site before the message's final sentence stop."""
    if not where:
        return message
    if message.endswith("."):
        return f"{message[:-1]}{_in(where)}."
    return f"{message}{_in(where)}"


# =============================================================================
# Image settings
# =============================================================================

_IMAGE_STR_FIELDS: Final = (
    "base_image",
    "dockerfile",
    "build_context_root",
    "image_tag",
    "target_repository",
    "user",
    "platform",
)
_IMAGE_LIST_FIELDS: Final = ("requirements", "apt_packages", "secret_environment_from")
# Substrings (case-insensitive) of environment variable names whose values are
# never written into an execution record.
_SECRET_MARKERS: Final = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")
REDACTED: Final = "***"
# "kitaru", "kitaru==1.0", "Kitaru[postgres] >= 1", "kitaru @ git+https://..."
_KITARU_REQUIREMENT_RE: Final = re.compile(r"^\s*kitaru\s*(\[[^\]]*\]\s*)?([<>=!~;@(]|$)", re.I)


@dataclass(frozen=True)
class ImageSettings:
    """How the container image for remote execution is built.

    Every field is optional; None means "not set here" so that settings from
    several levels (``.run``, ``@flow``, ``configure``, env, pyproject) can be
    layered field by field. Sequences are stored as tuples, so an instance
    cannot change after validation.
    """

    base_image: str | None = None
    requirements: tuple[str, ...] | list[str] | None = None
    environment: dict[str, str] | None = None
    apt_packages: tuple[str, ...] | list[str] | None = None
    replicate_local_python_environment: bool | None = None
    dockerfile: str | None = None
    # Also accepted by Kitaru's ImageSettings; carried through to the record.
    secret_environment_from: tuple[str, ...] | list[str] | None = None
    build_context_root: str | None = None
    image_tag: str | None = None
    target_repository: str | None = None
    user: str | None = None
    platform: str | None = None

    def __post_init__(self) -> None:
        for name in _IMAGE_STR_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                raise _image_type_error(name, "a non-empty string", value)
            object.__setattr__(self, name, value.strip())
        for name in _IMAGE_LIST_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            # A bare string is almost always a mistake ("pandas" -> 'p','a',...).
            if not isinstance(value, list | tuple) or not all(
                isinstance(item, str) and item.strip() for item in value
            ):
                raise _image_type_error(name, "a list of non-empty strings", value)
            object.__setattr__(self, name, tuple(item.strip() for item in value))
        env = self.environment
        if env is not None:
            if not isinstance(env, Mapping):
                raise _image_type_error("environment", "a mapping of strings to strings", env)
            for key, val in env.items():
                if not isinstance(key, str) or not key.strip():
                    raise _image_type_error(
                        "environment", "a mapping with non-empty string keys", key
                    )
                if not isinstance(val, str):
                    raise KitaruUsageError(
                        f"Invalid image setting 'environment': the value of {key!r} must be a "
                        f"string (quote it: {str(val)!r}), got {type(val).__name__} {val!r}."
                    )
            # A private copy: the caller's dict must not change a frozen setting.
            object.__setattr__(self, "environment", {k.strip(): v for k, v in env.items()})
        flag = self.replicate_local_python_environment
        if flag is not None and not isinstance(flag, bool):
            raise _image_type_error("replicate_local_python_environment", "True or False", flag)

    def __hash__(self) -> int:
        env = self.environment
        return hash(
            tuple(
                tuple(sorted(env.items()))
                if f.name == "environment" and env
                else getattr(self, f.name)
                for f in fields(self)
            )
        )

    @classmethod
    def coerce(cls, value: object, *, where: str | None = None) -> ImageSettings | None:
        """Turn an ``image=`` argument into ImageSettings.

        Accepts None, a base image string, a mapping of ImageSettings fields,
        or an ImageSettings. ``where`` names the call site in error messages.
        """
        if value is None or isinstance(value, ImageSettings):
            return value
        try:
            if isinstance(value, str):
                if not value.strip():
                    raise KitaruUsageError(
                        "An image given as a string must be a non-empty base image name, "
                        "e.g. 'python:3.12-slim'."
                    )
                return cls(base_image=value)
            if isinstance(value, Mapping):
                return cls(**_image_kwargs(value))
        except KitaruUsageError as exc:
            raise KitaruUsageError(_add_where(str(exc), where)) from None
        raise KitaruUsageError(
            f"image must be a base image string, a mapping of image settings or "
            f"kitaru.ImageSettings, got {type(value).__name__} {value!r}{_in(where)}."
        )

    def is_empty(self) -> bool:
        """True if no field is set."""
        return all(getattr(self, f.name) is None for f in fields(self))

    def to_dict(self) -> dict[str, Any]:
        """The set fields as plain JSON-able data (lists, dicts); unset fields omitted."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        return out


ImageInput: TypeAlias = str | Mapping[str, Any] | ImageSettings
IMAGE_FIELDS: Final = tuple(f.name for f in fields(ImageSettings))


def _image_type_error(name: str, expected: str, value: object) -> KitaruUsageError:
    return KitaruUsageError(
        f"Invalid image setting {name!r}: expected {expected}, "
        f"got {type(value).__name__} {value!r}."
    )


def _image_kwargs(value: Mapping[Any, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        # "parent_image" is ZenML's spelling of base_image; accept it.
        name = "base_image" if key == "parent_image" else key
        if name not in IMAGE_FIELDS:
            raise KitaruUsageError(
                f"Unknown image setting {key!r}. Valid keys: {', '.join(IMAGE_FIELDS)}."
            )
        if name in kwargs:
            raise KitaruUsageError("Give either 'base_image' or 'parent_image', not both.")
        kwargs[name] = item
    return kwargs


def resolve_image(*layers: ImageSettings | None) -> ImageSettings | None:
    """Merge image settings, highest precedence first.

    Each field comes from the highest layer that sets it, except ``environment``,
    which is merged per variable (a higher layer wins for the same variable), so
    ``@flow(image=...)`` can add a variable without dropping configured ones.
    Returns None if no layer sets anything.
    """
    present = [layer for layer in layers if layer is not None and not layer.is_empty()]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    merged: dict[str, Any] = {}
    for f in fields(ImageSettings):
        if f.name == "environment":
            env: dict[str, str] = {}
            for layer in reversed(present):
                if layer.environment:
                    env.update(layer.environment)
            if env or any(layer.environment is not None for layer in present):
                merged["environment"] = env
            continue
        for layer in present:
            value = getattr(layer, f.name)
            if value is not None:
                merged[f.name] = value
                break
    return ImageSettings(**merged)


def _is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in _SECRET_MARKERS)


def requirements_include_kitaru(requirements: Any) -> bool:
    """True if a requirement for the ``kitaru`` package itself is already listed."""
    return any(
        isinstance(req, str) and _KITARU_REQUIREMENT_RE.match(req) for req in requirements or ()
    )


def frozen_image(settings: ImageSettings) -> dict[str, Any]:
    """The image dict recorded in an execution.

    Adds ``kitaru==<this version>`` to ``requirements`` (the worker inside the
    image needs the SDK) unless a custom ``dockerfile`` is set or a kitaru
    requirement is already listed, and redacts secret-looking environment values.
    """
    from kitaru._version import __version__

    data = settings.to_dict()
    if settings.dockerfile is None and not requirements_include_kitaru(settings.requirements):
        data["requirements"] = [*data.get("requirements", []), f"kitaru=={__version__}"]
    env = data.get("environment")
    if env:
        data["environment"] = {k: REDACTED if _is_secret_name(k) else v for k, v in env.items()}
    return data


# =============================================================================
# Validation helpers shared with the decorators
# =============================================================================


def validate_retries(value: object, *, where: str) -> int | None:
    """``retries`` must be an int >= 0 (a bool is not accepted); None means not set."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KitaruUsageError(
            f"retries must be a non-negative integer, got {value!r}{_in(where)}."
        )
    return value


def validate_cache(value: object, *, where: str) -> bool | None:
    """``cache`` must be True or False; None means not set."""
    if value is None or isinstance(value, bool):
        return value
    raise KitaruUsageError(f"cache must be True or False, got {value!r}{_in(where)}.")


def validate_stack(value: object, *, where: str) -> str | None:
    """A stack name or id: a non-empty string. Whether it exists is checked at resolution."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise KitaruUsageError(
            f"stack must be a non-empty stack name or id, got {value!r}{_in(where)}."
        )
    return value.strip()


def _validate_nonempty_str(name: str, value: object, *, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise KitaruUsageError(f"{name} must be a non-empty string, got {value!r}{_in(where)}.")
    return value.strip()


def validate_llm_estimated_costs(value: object, *, where: str) -> str | None:
    """``"auto"`` or ``"off"`` (True/False accepted as shorthands); None means not set."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "auto" if value else "off"
    if isinstance(value, str) and value.strip().lower() in LLM_ESTIMATED_COSTS_VALUES:
        return value.strip().lower()
    raise KitaruUsageError(
        f"llm_estimated_costs must be 'auto' or 'off', got {value!r}{_in(where)}."
    )


# =============================================================================
# configure()
# =============================================================================


@dataclass(frozen=True)
class KitaruConfig:
    """What ``kitaru.configure()`` has set in this process (None = not set)."""

    stack: str | None = None
    image: ImageSettings | None = None
    cache: bool | None = None
    retries: int | None = None
    llm_estimated_costs: str | None = None
    project: str | None = None
    store_url: str | None = None
    artifacts_root: str | None = None
    allow_pickle: bool | None = None
    #: Size limits as given (bytes, or text like "64MiB"/"unlimited"); see kitaru._limits.
    max_flow_input_bytes: int | str | None = None
    max_wait_input_bytes: int | str | None = None


_config_lock = threading.Lock()
_config = KitaruConfig()


def configure(
    *,
    stack: str | _Unset | None = _UNSET,
    image: ImageInput | _Unset | None = _UNSET,
    cache: bool | _Unset | None = _UNSET,
    retries: int | _Unset | None = _UNSET,
    llm_estimated_costs: str | _Unset | None = _UNSET,
    project: str | _Unset | None = _UNSET,
    store_url: str | _Unset | None = _UNSET,
    artifacts_root: str | os.PathLike[str] | _Unset | None = _UNSET,
    allow_pickle: bool | _Unset | None = _UNSET,
    max_flow_input_bytes: int | str | _Unset | None = _UNSET,
    max_wait_input_bytes: int | str | _Unset | None = _UNSET,
) -> KitaruConfig:
    """Set process-wide defaults; returns the resulting configuration.

    Only the arguments passed change; passing None clears a setting. All
    arguments are validated before anything changes. Whether ``stack`` exists is
    checked when a flow uses it, so a stack may be configured before it is created.
    ``allow_pickle=False`` stops values from being stored or loaded with cloudpickle
    (see ``kitaru._blobs.pickle_policy``). ``max_flow_input_bytes`` and
    ``max_wait_input_bytes`` (bytes, "64MiB" or "unlimited") bound what ``.run()`` and
    an answer to a wait may hand to Kitaru (see ``kitaru._limits``).
    """
    where = "in kitaru.configure()"
    changes: dict[str, Any] = {}
    if stack is not _UNSET:
        changes["stack"] = validate_stack(stack, where=where)
    if image is not _UNSET:
        changes["image"] = ImageSettings.coerce(image, where=where)
    if cache is not _UNSET:
        changes["cache"] = validate_cache(cache, where=where)
    if retries is not _UNSET:
        changes["retries"] = validate_retries(retries, where=where)
    if llm_estimated_costs is not _UNSET:
        changes["llm_estimated_costs"] = validate_llm_estimated_costs(
            llm_estimated_costs, where=where
        )
    if project is not _UNSET:
        changes["project"] = _validate_nonempty_str("project", project, where=where)
    if store_url is not _UNSET:
        changes["store_url"] = _validate_nonempty_str("store_url", store_url, where=where)
    if artifacts_root is not _UNSET:
        root = _validate_nonempty_str("artifacts_root", artifacts_root, where=where)
        # Relative to the cwd at configure() time, not wherever a worker runs later.
        changes["artifacts_root"] = None if root is None else _absolute_if_local(root, None)
    if allow_pickle is not _UNSET:
        from kitaru._blobs.pickle_policy import validate_allow_pickle

        changes["allow_pickle"] = validate_allow_pickle(allow_pickle, where=where)
    for key, size in (
        ("max_flow_input_bytes", max_flow_input_bytes),
        ("max_wait_input_bytes", max_wait_input_bytes),
    ):
        if size is not _UNSET:
            from kitaru._limits import validate_size_setting

            changes[key] = validate_size_setting(size, key=key, where=where)

    global _config
    with _config_lock:
        _config = _replace(_config, changes)
        return _config


def _replace(config: KitaruConfig, changes: Mapping[str, Any]) -> KitaruConfig:
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    values.update(changes)
    return KitaruConfig(**values)


def current_configuration() -> KitaruConfig:
    """What ``configure()`` has set in this process."""
    return _config


def reset_configuration() -> None:
    """Forget everything ``configure()`` set (and cached pyproject reads); for tests."""
    global _config
    with _config_lock:
        _config = KitaruConfig()
    clear_pyproject_cache()


# =============================================================================
# Environment variables and pyproject.toml
# =============================================================================


def _env(name: str) -> str | None:
    # An empty variable counts as unset: `KITARU_CACHE= cmd` is a common way to clear it.
    value = _environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _env_cache() -> bool | None:
    raw = _env(ENV_CACHE)
    if raw is None:
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise KitaruUsageError(
        f"{ENV_CACHE} must be one of true/false, 1/0, yes/no, on/off, got {raw!r}. "
        f"Fix or unset the environment variable."
    )


def _env_retries() -> int | None:
    raw = _env(ENV_RETRIES)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise KitaruUsageError(
            f"{ENV_RETRIES} must be a non-negative integer, got {raw!r}. "
            f"Fix or unset the environment variable."
        )
    return value


def _env_image() -> ImageSettings | None:
    raw = _env(ENV_IMAGE)
    if raw is None:
        return None
    where = f"from the environment variable {ENV_IMAGE}"
    if raw.startswith("{"):
        import json

        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise KitaruUsageError(
                f"{ENV_IMAGE} looks like JSON but does not parse ({exc}). Give a base image "
                f'name or a JSON object such as {{"base_image": "python:3.12-slim"}}.'
            ) from None
        return ImageSettings.coerce(parsed, where=where)
    return ImageSettings.coerce(raw, where=where)


def _pyproject_where(path: Path, key: str) -> str:
    return f"in [tool.kitaru] key {key!r} of {path}"


# =============================================================================
# Settings resolution
# =============================================================================


class _Layer:
    """The settings one source gives (None: not set there).

    A plain class, not a dataclass: building a dataclass costs ~1 ms at import.
    """

    __slots__ = ("cache", "image", "retries", "source", "stack")

    def __init__(
        self,
        source: str,
        stack: str | None = None,
        cache: bool | None = None,
        retries: int | None = None,
        image: ImageSettings | None = None,
    ) -> None:
        self.source, self.stack, self.cache, self.retries = source, stack, cache, retries
        self.image = image


_RESOLVED_KEYS: Final = ("stack", "cache", "retries", "image")


def _call_layer(
    source: str, values: Mapping[str, Any], where_call: str, flow_name: str | None
) -> _Layer:
    where = f"in {where_call}" + (f" for {flow_name!r}" if flow_name else "")
    unknown = sorted(set(values) - set(_RESOLVED_KEYS))
    if unknown:
        raise KitaruUsageError(
            f"Unknown setting(s) {', '.join(map(repr, unknown))} {where}; "
            f"valid: {', '.join(_RESOLVED_KEYS)}."
        )
    return _Layer(
        source=source,
        stack=validate_stack(values.get("stack"), where=where),
        cache=validate_cache(values.get("cache"), where=where),
        retries=validate_retries(values.get("retries"), where=where),
        image=ImageSettings.coerce(values.get("image"), where=where),
    )


def _env_layers() -> list[_Layer]:
    layers = []
    stack = _env(ENV_STACK)
    if stack is not None:
        layers.append(_Layer(source=f"env:{ENV_STACK}", stack=stack))
    cache = _env_cache()
    if cache is not None:
        layers.append(_Layer(source=f"env:{ENV_CACHE}", cache=cache))
    retries = _env_retries()
    if retries is not None:
        layers.append(_Layer(source=f"env:{ENV_RETRIES}", retries=retries))
    image = _env_image()
    if image is not None:
        layers.append(_Layer(source=f"env:{ENV_IMAGE}", image=image))
    return layers


def _pyproject_layer() -> _Layer | None:
    # Strict: a run must not go ahead without settings its project file may set.
    found = pyproject_table(strict=True)
    if found is None:
        return None
    path, table = found
    return _Layer(
        source=f"pyproject:{path}",
        stack=validate_stack(table.get("stack"), where=_pyproject_where(path, "stack")),
        cache=validate_cache(table.get("cache"), where=_pyproject_where(path, "cache")),
        retries=validate_retries(table.get("retries"), where=_pyproject_where(path, "retries")),
        image=ImageSettings.coerce(table.get("image"), where=_pyproject_where(path, "image")),
    )


@dataclass(frozen=True)
class ResolvedSettings:
    """The settings one execution runs with, and where each came from.

    ``sources`` maps each key to "run", "decorator", "configure",
    "env:KITARU_…", "pyproject:/path/pyproject.toml", "active stack" or
    "default"; for ``image`` it lists every contributing level joined by "+".
    """

    stack: str
    cache: bool
    retries: int
    image: dict[str, Any] | None
    sources: dict[str, str]
    stack_id: str | None = None
    #: The merged image settings with their real values (never recorded: ``image``
    #: is the record's copy, secret-looking values redacted). None after from_record.
    image_settings: ImageSettings | None = field(default=None, compare=False, repr=False)

    @property
    def cache_explicit(self) -> bool:
        """True if ``cache`` was set at some level (so it overrides checkpoint-level cache)."""
        return self.sources.get("cache", "default") != "default"

    def to_record(self) -> dict[str, Any]:
        """JSON-able dict to freeze into the execution record."""
        import copy

        return {
            "stack": self.stack,
            "stack_id": self.stack_id,
            "cache": self.cache,
            "retries": self.retries,
            "image": copy.deepcopy(self.image),
            "sources": dict(self.sources),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ResolvedSettings:
        """Rebuild from :meth:`to_record` output (for resume and replay)."""
        import copy

        try:
            stack, cache, retries = record["stack"], record["cache"], record["retries"]
        except KeyError as exc:
            raise KitaruUsageError(
                f"A settings record needs 'stack', 'cache' and 'retries'; {exc} is missing."
            ) from None
        if not isinstance(stack, str) or not isinstance(cache, bool):
            raise KitaruUsageError(f"Malformed settings record: {dict(record)!r}.")
        image = record.get("image")
        return cls(
            stack=stack,
            cache=cache,
            retries=validate_retries(retries, where="in a settings record") or 0,
            image=copy.deepcopy(image) if isinstance(image, dict) else None,
            sources=dict(record.get("sources") or {}),
            stack_id=record.get("stack_id"),
        )


def resolve_settings(
    *,
    run: Mapping[str, Any] | None = None,
    decorator: Mapping[str, Any] | None = None,
    flow_name: str | None = None,
) -> ResolvedSettings:
    """Resolve stack, cache, retries and image for one submission.

    ``run`` holds the ``.run(...)`` arguments and ``decorator`` the ``@flow(...)``
    arguments (keys stack/cache/retries/image; None = not given). Every level is
    validated even when a higher one wins, so a broken setting fails loudly
    rather than only on the day it starts to matter. Reads configuration but
    never writes it: the chosen stack is bound only to this submission.
    """
    layers = [
        _call_layer("run", run or {}, ".run(...)", flow_name),
        _call_layer("decorator", decorator or {}, "@flow(...)", flow_name),
    ]
    config = _config  # one consistent snapshot even if another thread configures
    layers.append(
        _Layer(
            source="configure",
            stack=config.stack,
            cache=config.cache,
            retries=config.retries,
            image=config.image,
        )
    )
    layers.extend(_env_layers())
    pyproject = _pyproject_layer()
    if pyproject is not None:
        layers.append(pyproject)

    sources: dict[str, str] = {}

    cache: bool = DEFAULT_CACHE
    sources["cache"] = "default"
    for layer in layers:
        if layer.cache is not None:
            cache, sources["cache"] = layer.cache, layer.source
            break

    retries: int = DEFAULT_RETRIES
    sources["retries"] = "default"
    for layer in layers:
        if layer.retries is not None:
            retries, sources["retries"] = layer.retries, layer.source
            break

    image_layers = [layer for layer in layers if layer.image is not None]
    merged = resolve_image(*(layer.image for layer in image_layers))
    image = None if merged is None else frozen_image(merged)
    sources["image"] = _image_sources(image_layers) if merged is not None else "default"

    stack_ref, stack_source = None, "default"
    for layer in layers:
        if layer.stack is not None:
            stack_ref, stack_source = layer.stack, layer.source
            break
    if stack_ref is None:
        from kitaru._stacks.registry import persisted_active_stack

        stack_ref = persisted_active_stack()
        stack_source = "active stack" if stack_ref is not None else "default"
    stack_name, stack_id = _lookup_stack(stack_ref or DEFAULT_STACK, stack_source)
    sources["stack"] = stack_source

    return ResolvedSettings(
        stack=stack_name,
        cache=cache,
        retries=retries,
        image=image,
        sources={key: sources[key] for key in _RESOLVED_KEYS},
        stack_id=stack_id,
        image_settings=merged,
    )


def _image_sources(layers: list[_Layer]) -> str:
    """The levels that supplied at least one field (or env var) of the merged image."""
    credited: set[str] = set()
    for name in IMAGE_FIELDS:
        if name == "environment":
            winners: dict[str, str] = {}
            for layer in layers:
                for var in (layer.image.environment or {}) if layer.image else {}:
                    winners.setdefault(var, layer.source)
            credited.update(winners.values())
            continue
        for layer in layers:
            if layer.image is not None and getattr(layer.image, name) is not None:
                credited.add(layer.source)
                break
    return "+".join(layer.source for layer in layers if layer.source in credited)


def _lookup_stack(ref: str, source: str) -> tuple[str, str]:
    from kitaru._stacks.registry import LOCAL_STACK_ID, LOCAL_STACK_NAME, find_stack, list_stacks

    # The built-in stack needs no file read: keeps the common .run() path cheap.
    if ref == LOCAL_STACK_NAME or ref.lower() == LOCAL_STACK_ID:
        return LOCAL_STACK_NAME, LOCAL_STACK_ID
    info = find_stack(ref)
    if info is None:
        known = ", ".join(s.name for s in list_stacks())
        raise KitaruUsageError(
            f"Stack {ref!r} (set by {source}) does not exist. Known stacks: {known}. "
            f"Create it with `kitaru stack create {ref}` or pick one of the known stacks."
        )
    return info.name, info.id


# =============================================================================
# Store location and other scalar settings
# =============================================================================


def _absolute_if_local(value: str, base: Path | None) -> str:
    if "://" in value:
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return str(path.absolute())


def _pyproject_str(key: str) -> tuple[str, Path] | None:
    # Lenient: a broken project file must not lock anyone out of reading their store.
    found = pyproject_table(strict=False)
    if found is None:
        return None
    path, table = found
    value = _validate_nonempty_str(key, table.get(key), where=_pyproject_where(path, key))
    return None if value is None else (value, path)


def resolve_store_url() -> str:
    """configure(store_url) -> KITARU_STORE_URL -> [tool.kitaru] -> connected server -> default."""
    return resolve_store_location()[0]


def resolve_store_location() -> tuple[str, str | None]:
    """The store URL and what set it (None for the default store in the config directory)."""
    if _config.store_url is not None:
        return _config.store_url, "kitaru.configure(store_url=...)"
    env = _env(ENV_STORE_URL)
    if env is not None:
        return env, ENV_STORE_URL
    found = _pyproject_str("store_url")
    if found is not None:
        return found[0], f"store_url in [tool.kitaru] of {found[1]}"
    # Connected to a Kitaru server (connect(), KITARU_SERVER_URL, `kitaru login`): flows
    # run here record through it, like every read does; except when it is the background
    # server `kitaru login` started here: it serves a store this process may write itself.
    from kitaru._paths import default_store_url
    from kitaru.client._remote_config import current_connection, served_by_local_server

    connection = current_connection()
    if connection is not None:
        served = served_by_local_server(connection)
        if served is None:
            return f"kitaru+{connection.url}", f"the Kitaru server ({connection.source})"
        if served != default_store_url():
            return served, f"the store of the local Kitaru server ({connection.url})"
    return default_store_url(), None


def resolve_artifacts_root(store_url: str | None = None) -> str:
    """configure(artifacts_root) -> KITARU_ARTIFACTS_ROOT -> [tool.kitaru] -> default.

    The default of a process recording through a Kitaru server is that server
    (its URL: artifact bytes are uploaded and downloaded through its API).

    Relative local paths become absolute (against the cwd, or the pyproject's
    directory for the pyproject value) so a worker elsewhere finds the same place.
    """
    if _config.artifacts_root is not None:
        return _config.artifacts_root
    env = _env(ENV_ARTIFACTS_ROOT)
    if env is not None:
        return _absolute_if_local(env, None)
    found = _pyproject_str("artifacts_root")
    if found is not None:
        value, path = found
        return _absolute_if_local(value, path.parent)
    if store_url is None:  # callers that resolved it already pass it (no second lookup)
        store_url = resolve_store_url()
    if store_url.startswith(("kitaru+http://", "kitaru+https://")):
        # Recording through a server and no shared root named: bytes go through it too.
        return store_url
    from kitaru._paths import default_artifacts_root

    return default_artifacts_root()


def resolve_llm_estimated_costs() -> str:
    """configure -> KITARU_LLM_ESTIMATED_COSTS -> [tool.kitaru] -> "auto"."""
    if _config.llm_estimated_costs is not None:
        return _config.llm_estimated_costs
    env = _env(ENV_LLM_ESTIMATED_COSTS)
    if env is not None:
        value = validate_llm_estimated_costs(env, where=f"from {ENV_LLM_ESTIMATED_COSTS}")
        assert value is not None
        return value
    found = pyproject_table(strict=False)
    if found is not None:
        path, table = found
        value = validate_llm_estimated_costs(
            table.get("llm_estimated_costs"),
            where=_pyproject_where(path, "llm_estimated_costs"),
        )
        if value is not None:
            return value
    return "auto"


__all__ = [
    "IMAGE_FIELDS",
    "ImageInput",
    "ImageSettings",
    "KitaruConfig",
    "ResolvedSettings",
    "configure",
    "current_configuration",
    "find_pyproject",
    "frozen_image",
    "requirements_include_kitaru",
    "reset_configuration",
    "resolve_artifacts_root",
    "resolve_image",
    "resolve_llm_estimated_costs",
    "resolve_settings",
    "resolve_store_location",
    "resolve_store_url",
    "validate_cache",
    "validate_llm_estimated_costs",
    "validate_retries",
    "validate_stack",
]
