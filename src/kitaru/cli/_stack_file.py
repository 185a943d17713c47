"""``kitaru stack create --file/-f``: a stack described in a YAML (or JSON) file.

The file holds a mapping of the same settings as the command's options::

    name: gpu-cluster
    type: ray
    activate: false
    address: ray://10.0.0.5:10001
    artifact_store: s3://bucket/kitaru
    runtime_env: {pip: [httpx]}
    num_gpus: 1
    labels: {team: research}

Options given on the command line win over the file's values, so one file can serve
as a template (``kitaru stack create other -f gpu.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kitaru.cli._output import UsageProblem

#: The settings a stack file may hold.
FIELDS = (
    "name",
    "type",
    "activate",
    "labels",
    "address",
    "artifact_store",
    "runtime_env",
    "num_cpus",
    "num_gpus",
    "resources",
)


def read_stack_file(path: Path) -> dict[str, Any]:
    """The settings in ``path`` (checked: a mapping of known fields)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageProblem(f"Stack file {str(path)!r} does not exist.") from None
    except IsADirectoryError:
        raise UsageProblem(f"Stack file {str(path)!r} is a directory; pass a YAML file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"Cannot read stack file {str(path)!r}: {exc}.") from None
    import yaml  # JSON is YAML too

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageProblem(f"Stack file {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageProblem(
            f"Stack file {str(path)!r} must hold a mapping of settings (name, type, "
            f"address, ...), got {type(data).__name__}."
        )
    unknown = sorted(str(key) for key in data if key not in FIELDS)
    if unknown:
        raise UsageProblem(
            f"Stack file {str(path)!r} has unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(FIELDS)}."
        )
    if "activate" in data and not isinstance(data["activate"], bool):
        raise UsageProblem(
            f"Stack file {str(path)!r}: 'activate' must be true or false, got {data['activate']!r}."
        )
    if "type" in data and not isinstance(data["type"], str):
        raise UsageProblem(
            f"Stack file {str(path)!r}: 'type' must be a text such as local or ray, "
            f"got {data['type']!r}."
        )
    return data
