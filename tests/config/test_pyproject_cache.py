"""A clean parse of the project's pyproject.toml is kept for the next process, which then
needs no TOML parser, and is never used once the file changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._env import process_env

_SCRIPT = """
import json, sys, warnings
import kitaru._filecache
if sys.argv[1] == "settle-now":  # trust a version at once (default: 3 s after a write)
    kitaru._filecache.SETTLE_NS = 0
from kitaru.config import resolve_settings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    settings = resolve_settings()
print(json.dumps({
    "retries": settings.retries,
    "source": settings.sources["retries"],
    "parsed": "tomllib" in sys.modules,
    "warnings": [str(w.message) for w in caught],
}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    return directory


def _settings(project: Path, home: Path, *, settle_now: bool = False) -> dict[str, object]:
    child = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "settle-now" if settle_now else "-"],
        cwd=project,
        env=process_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)  # type: ignore[no-any-return]


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    old = time.time() - 3600
    os.utime(path, (old, old))


def test_the_next_process_reads_the_kept_parse_until_the_file_changes(
    project: Path, kitaru_home: Path
) -> None:
    pyproject = project / "pyproject.toml"
    _write(pyproject, "[project]\nname = 'demo'\n\n[tool.kitaru]\nretries = 3\n")
    kitaru_home.mkdir(parents=True)  # a user who has run Kitaru before
    first = _settings(project, kitaru_home, settle_now=True)
    assert first == {
        "retries": 3,
        "source": f"pyproject:{pyproject}",
        "parsed": True,
        "warnings": [],
    }
    kept = json.loads((kitaru_home / "pyproject-cache.json").read_text())
    assert kept[str(pyproject)]["table"] == {"retries": 3}

    assert _settings(project, kitaru_home) == {**first, "parsed": False}

    _write(pyproject, "[tool.kitaru]\nretries = 5\n")  # another version: parsed again
    assert _settings(project, kitaru_home)["retries"] == 5
    _write(pyproject, "[project]\nname = 'demo'\n")  # the table removed
    after = _settings(project, kitaru_home)
    assert (after["retries"], after["source"], after["parsed"]) == (0, "default", True)


def test_a_file_that_warns_is_parsed_and_warns_in_every_process(
    project: Path, kitaru_home: Path
) -> None:
    _write(project / "pyproject.toml", "[tool.kitaru]\nretries = 2\nretires = 3\n")
    kitaru_home.mkdir(parents=True)
    for settle_now in (True, False):
        seen = _settings(project, kitaru_home, settle_now=settle_now)
        assert seen["retries"] == 2
        assert seen["parsed"] is True
        assert len(seen["warnings"]) == 1  # type: ignore[arg-type]
        assert "Unknown key 'retires'" in seen["warnings"][0]  # type: ignore[index]
    assert not (kitaru_home / "pyproject-cache.json").exists()


def test_a_file_written_just_now_is_not_kept(project: Path, kitaru_home: Path) -> None:
    """Its version may not change on a rewrite within the timestamp granularity."""
    (project / "pyproject.toml").write_text("[tool.kitaru]\nretries = 4\n")
    kitaru_home.mkdir(parents=True)
    assert _settings(project, kitaru_home)["retries"] == 4
    assert not (kitaru_home / "pyproject-cache.json").exists()


@pytest.mark.parametrize(
    "damage", [b"", b"{not json", b"[1, 2]", b'{"/x": 1}', b"\xff\xfe", "table-not-a-dict"]
)
def test_a_damaged_cache_is_ignored_and_replaced(
    project: Path, kitaru_home: Path, damage: bytes | str
) -> None:
    pyproject = project / "pyproject.toml"
    _write(pyproject, "[tool.kitaru]\nretries = 1\n")
    cache = kitaru_home / "pyproject-cache.json"
    kitaru_home.mkdir(parents=True, exist_ok=True)
    if damage == "table-not-a-dict":
        version = os.stat(pyproject)
        entry = [version.st_dev, version.st_ino, version.st_size]
        entry += [version.st_mtime_ns, version.st_ctime_ns]
        cache.write_text(json.dumps({str(pyproject): {"version": entry, "table": [1]}}))
    else:
        assert isinstance(damage, bytes)
        cache.write_bytes(damage)
    seen = _settings(project, kitaru_home, settle_now=True)
    assert (seen["retries"], seen["parsed"]) == (1, True)
    assert json.loads(cache.read_text())[str(pyproject)]["table"] == {"retries": 1}
