"""Values whose class lives in a script (``__main__``), shown and loaded from elsewhere.

A real script run as ``python agent.py`` stores a Pydantic model and a dataclass
defined in it; the CLI (``kitaru artifacts show ID --value``) and ``kitaru.load``
in other processes, started from another directory, then read them: with the
class taken from the recorded script while it exists, else as the stored JSON
with a warning. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from kitaru import KitaruClient

SCRIPT = textwrap.dedent(
    """
    from dataclasses import dataclass

    from pydantic import BaseModel

    import kitaru
    from kitaru import checkpoint, flow


    class Plan(BaseModel):
        topic: str
        depth: int = 1


    @dataclass
    class Note:
        text: str
        words: int


    @checkpoint
    def make_plan(topic: str) -> Plan:
        return Plan(topic=topic, depth=2)


    @checkpoint
    def write(plan: Plan) -> Note:
        kitaru.save("pair", (plan, 7))
        return Note(text=plan.topic.upper(), words=1)


    @flow
    def agent(topic: str) -> Note:
        return write(make_plan(topic))


    if __name__ == "__main__":
        handle = agent.run("kitaru")
        print(handle.wait())
        print("EXEC", handle.exec_id)
    """
)

LOAD = textwrap.dedent(
    """
    import json, sys, warnings
    import kitaru
    from kitaru import KitaruClient
    from kitaru.handle import FlowHandle

    exec_id = sys.argv[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = kitaru.load(exec_id, "make_plan")
        pair = kitaru.load(exec_id, "pair")
        note = FlowHandle(exec_id).wait()
        ref = KitaruClient().executions.get(exec_id).checkpoints[0].artifacts[0]
        again = ref.load()
    def describe(value):
        if hasattr(value, "model_dump"):
            return [type(value).__name__, value.model_dump()]
        if hasattr(value, "__dataclass_fields__"):
            return [type(value).__name__, dict(vars(value))]
        return [type(value).__name__, value]
    print(json.dumps({
        "plan": describe(plan),
        "pair": [describe(item) for item in pair],
        "note": describe(note),
        "again": describe(again),
        "warnings": sorted({type(w.message).__name__ for w in caught}),
        "main": getattr(sys.modules["__main__"], "__file__", None),
    }))
    """
)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ""}  # nothing makes the script importable by name
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _setup(tmp_path: Path) -> tuple[Path, Path, str]:
    project = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    script = project / "agent.py"
    script.write_text(SCRIPT)
    done = _run([str(script)], cwd=project)
    assert done.returncode == 0, done.stderr
    exec_id = done.stdout.split("EXEC ")[1].strip()
    return script, elsewhere, exec_id


def _artifact_id(exec_id: str, name: str) -> str:
    refs = KitaruClient().artifacts.list(exec_id)
    return next(ref.artifact_id for ref in refs if ref.name == name)


def _item(document: Any) -> dict[str, Any]:
    """The shown artifact in the JSON document, wherever the envelope puts it."""
    if isinstance(document, dict):
        if "value_type" in document:
            return document
        for value in document.values():
            found = _item(value)
            if found:
                return found
    return {}


def _show(artifact_id: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _run(["-m", "kitaru.cli", "artifacts", "show", artifact_id, "--value", *extra], cwd)


def test_script_classes_load_from_the_recorded_script(any_store: str, tmp_path: Path) -> None:
    _script, elsewhere, exec_id = _setup(tmp_path)
    plan_id = _artifact_id(exec_id, "make_plan")

    shown = _show(plan_id, elsewhere, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    item = _item(json.loads(shown.stdout))
    assert item["value"] == {"topic": "kitaru", "depth": 2}
    assert item["value_type"] == "__main__.Plan"
    text = _show(_artifact_id(exec_id, "write"), elsewhere)
    assert text.returncode == 0, text.stderr
    assert "__main__.Note" in text.stdout
    assert "KITARU" in text.stdout

    loaded = _run(["-c", LOAD, exec_id], cwd=elsewhere)
    assert loaded.returncode == 0, loaded.stderr
    result: dict[str, Any] = json.loads(loaded.stdout)
    assert result["plan"] == ["Plan", {"topic": "kitaru", "depth": 2}]
    assert result["pair"] == [["Plan", {"topic": "kitaru", "depth": 2}], ["int", 7]]
    assert result["note"] == ["Note", {"text": "KITARU", "words": 1}]
    assert result["again"] == result["plan"]
    assert result["warnings"] == []
    assert result["main"] is None  # the caller's own __main__ was left alone


def test_without_the_script_values_come_back_as_stored_json(any_store: str, tmp_path: Path) -> None:
    script, elsewhere, exec_id = _setup(tmp_path)
    script.unlink()
    plan_id = _artifact_id(exec_id, "make_plan")

    shown = _show(plan_id, elsewhere, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    item = _item(json.loads(shown.stdout))
    assert item["value"] == {"topic": "kitaru", "depth": 2}
    assert item["value_type"] == "__main__.Plan"
    assert item["value_stored_json"] is True
    text = _show(plan_id, elsewhere)
    assert text.returncode == 0, text.stderr
    assert "__main__.Plan, shown as stored JSON" in " ".join(text.stdout.split())
    assert '"topic": "kitaru"' in text.stdout
    assert "Traceback" not in text.stderr

    loaded = _run(["-c", LOAD, exec_id], cwd=elsewhere)
    assert loaded.returncode == 0, loaded.stderr
    result = json.loads(loaded.stdout)
    assert result["plan"] == ["dict", {"topic": "kitaru", "depth": 2}]
    assert result["pair"] == [["dict", {"topic": "kitaru", "depth": 2}], ["int", 7]]
    assert result["note"] == ["dict", {"text": "KITARU", "words": 1}]
    assert result["warnings"] == ["KitaruPlainDataWarning"]
