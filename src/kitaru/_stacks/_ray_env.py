"""Translating an execution's image settings into a Ray runtime environment.

What each image field becomes on a ray stack:

- ``requirements`` -> ``pip`` (a ``kitaru`` requirement is dropped: Kitaru
  itself travels as ``py_modules`` from this installation, never from PyPI);
- ``environment`` -> ``env_vars``, except values whose names look secret
  (KEY, TOKEN, SECRET, PASSWORD, ...): Ray's runtime-env agent prints
  ``env_vars`` into its logs, so those travel with the execution's own
  arguments and are set in the worker's process by Kitaru;
- ``replicate_local_python_environment=True`` -> ``pip`` gets this
  environment's distributions pinned (``name==version``);
- ``base_image`` -> ``image_uri`` (Ray runs the worker in that container;
  the nodes need a container runtime, podman);
- ``apt_packages``, ``dockerfile`` -> refused: they need an image built
  beforehand, given as ``base_image``.

The stack's own ``runtime_env`` is the base the image-derived one is merged over.
The flow's code travels as ``working_dir`` (its project root) or, for a flow
imported from an installed package, that package as ``py_modules``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kitaru._stacks.ray_config import looks_secret, redact_runtime_env
from kitaru.config import requirements_include_kitaru
from kitaru.errors import KitaruUsageError

#: Left out of a shipped working_dir (Ray's own ``excludes`` syntax: gitignore-style).
CODE_EXCLUDES: Final = [
    ".venv",
    "venv",
    ".git",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    "node_modules",
    ".kitaru/*.db",
    ".kitaru/artifacts",
]
#: Ray refuses working_dir packages larger than this (its own limit is 500 MiB).
MAX_CODE_BYTES: Final = 100 * 1024 * 1024
_EXCLUDED_DIRS: Final = frozenset(
    {
        ".venv",
        "venv",
        ".git",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        "node_modules",
    }
)


@dataclass
class RuntimeEnv:
    """The runtime env for Ray, the secrets kept out of it, and where the code went."""

    ray: dict[str, Any]
    secret_env: dict[str, str] = field(default_factory=dict)
    #: The local directory shipped as working_dir (paths under it are remapped on workers).
    code_root: str | None = None

    def recorded(self) -> dict[str, Any]:
        """What the frozen execution config keeps: secret-looking values redacted."""
        data = redact_runtime_env(self.ray)
        if self.secret_env:
            data["kitaru_secret_env"] = sorted(self.secret_env)
        return data


def build_runtime_env(
    *,
    stack_name: str,
    stack_env: dict[str, Any],
    image: dict[str, Any] | None,
    flow_ref: dict[str, Any],
) -> RuntimeEnv:
    """The Ray runtime env for one execution (see the module docstring for each field)."""
    image = image or {}
    for unsupported in ("apt_packages", "dockerfile"):
        if image.get(unsupported):
            raise KitaruUsageError(
                f"image.{unsupported} is not supported on ray stack {stack_name!r}: Ray does "
                f"not build images. Build one with those packages beforehand and give it as "
                f"image base_image=... (Ray runs the execution in it via image_uri)."
            )
    env: dict[str, Any] = {k: v for k, v in stack_env.items()}
    base_image = image.get("base_image")
    if base_image:
        env["image_uri"] = base_image
    pip = list(_as_list(env.get("pip")))
    pip += [r for r in image.get("requirements") or () if not requirements_include_kitaru([r])]
    if image.get("replicate_local_python_environment"):
        pip += _local_pins()
    if pip:
        env["pip"] = _unique(pip)
    env_vars = dict(env.get("env_vars") or {})
    secret_env: dict[str, str] = {}
    for key, value in (image.get("environment") or {}).items():
        if looks_secret(key):
            secret_env[key] = value
        else:
            env_vars[key] = value
    if env_vars:
        env["env_vars"] = env_vars
    code_root = None
    if "working_dir" not in env:
        code_root, modules = _code_location(flow_ref)
        if code_root is not None:
            _check_code_size(code_root)
            env["working_dir"] = code_root
            env["excludes"] = _unique([*_as_list(env.get("excludes")), *CODE_EXCLUDES])
        if modules:
            env["py_modules"] = _unique([*_as_list(env.get("py_modules")), *modules])
    if not base_image:
        # Kitaru itself, from this installation (the image must bring its own).
        env["py_modules"] = _unique([*_as_list(env.get("py_modules")), kitaru_package_dir()])
    return RuntimeEnv(ray=env, secret_env=secret_env, code_root=code_root)


def kitaru_package_dir() -> str:
    import kitaru

    return str(Path(kitaru.__file__).resolve().parent)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _unique(items: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _code_location(ref: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(working_dir, py_modules) that carry the flow's code to the workers."""
    project = ref.get("project_root")
    if project and Path(project).is_dir():
        return str(Path(project)), []
    module_root = ref.get("module_root")
    module = str(ref.get("module") or "")
    if module_root and module not in ("__main__", "__mp_main__"):
        if _is_installed(module_root):
            package = Path(module_root) / module.split(".")[0]
            if package.is_dir():
                return None, [str(package)]
            single = package.with_suffix(".py")
            return None, [str(single)] if single.is_file() else []
        return str(Path(module_root)), []
    file = ref.get("file")
    if file and Path(file).is_file():
        return str(Path(file).parent), []
    return None, []


def _is_installed(path: str) -> bool:
    parts = Path(path).parts
    return "site-packages" in parts or "dist-packages" in parts


def _check_code_size(root: str) -> None:
    total = 0
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _EXCLUDED_DIRS]
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue
            if total > MAX_CODE_BYTES:
                raise KitaruUsageError(
                    f"The flow's project directory {root} holds more than "
                    f"{MAX_CODE_BYTES // (1024 * 1024)} MiB (after leaving out .venv, .git and "
                    "caches), too much to ship to the Ray cluster as working_dir. Mark a "
                    "smaller project root with `kitaru init`, move data out of it, or set "
                    "runtime_env working_dir/excludes on the stack (`--runtime-env`)."
                )


def _local_pins() -> list[str]:
    """This environment's distributions as ``name==version`` (Kitaru and Ray left out)."""
    from importlib import metadata

    pins: list[str] = []
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name or name.lower() in ("kitaru", "ray", "pip", "setuptools", "wheel"):
            continue
        if dist.read_text("direct_url.json"):
            continue  # editable or local installs cannot be pinned to an index version
        pins.append(f"{name}=={dist.version}")
    return sorted(set(pins), key=str.lower)


__all__ = ["CODE_EXCLUDES", "RuntimeEnv", "build_runtime_env", "kitaru_package_dir"]
