"""The stack registry: rules, persistence, concurrency, corrupt files."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from kitaru._paths import (
    global_config_file,
    read_global_config,
    update_global_config,
    write_global_config,
)
from kitaru._stacks import (
    LOCAL_STACK_ID,
    StackInfo,
    create_stack,
    current_stack,
    delete_stack,
    find_stack,
    get_stack,
    get_stack_record,
    list_stacks,
    persisted_active_stack,
    use_stack,
)
from kitaru.errors import KitaruBackendError, KitaruFeatureNotAvailableError, KitaruUsageError


def _run_python(code: str) -> str:
    # The subprocess inherits KITARU_CONFIG_PATH from the (monkeypatched) environment.
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# --------------------------------------------------------------------------------------
# The local stack
# --------------------------------------------------------------------------------------


def test_local_stack_always_exists() -> None:
    assert list_stacks() == [StackInfo(id=LOCAL_STACK_ID, name="local", is_active=True)]
    assert current_stack() == StackInfo(id=LOCAL_STACK_ID, name="local", is_active=True)
    assert persisted_active_stack() is None
    assert not global_config_file().exists()  # reading creates nothing


def test_local_stack_id_is_stable() -> None:
    assert str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kitaru.ai/stacks/local")) == LOCAL_STACK_ID
    assert get_stack(LOCAL_STACK_ID).name == "local"


def test_local_stack_cannot_be_deleted() -> None:
    with pytest.raises(KitaruUsageError, match="'local' stack is built in"):
        delete_stack("local")
    with pytest.raises(KitaruUsageError, match="'local' stack is built in"):
        delete_stack(LOCAL_STACK_ID, force=True)


# --------------------------------------------------------------------------------------
# create / use / list / get / delete
# --------------------------------------------------------------------------------------


def test_create_stack() -> None:
    info = create_stack("prod", activate=False, config={"workers": 4})
    assert info.name == "prod"
    assert info.kind == "local"
    assert info.is_active is False
    uuid.UUID(info.id)
    assert [s.name for s in list_stacks()] == ["local", "prod"]
    record = get_stack_record("prod")
    assert record["config"] == {"workers": 4}
    assert record["created_at"]
    assert current_stack().name == "local"


def test_create_and_activate() -> None:
    info = create_stack("dev", activate=True)
    assert info.is_active
    assert current_stack() == info
    assert persisted_active_stack() == "dev"


def test_list_order_and_active_flag() -> None:
    for name in ("zeta", "alpha", "mid"):
        create_stack(name)
    use_stack("mid")
    stacks = list_stacks()
    assert [s.name for s in stacks] == ["local", "alpha", "mid", "zeta"]
    assert [s.is_active for s in stacks] == [False, False, True, False]


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "dot.name", "ü", 5, None])
def test_invalid_names(name: object) -> None:
    with pytest.raises(KitaruUsageError, match="Invalid stack name"):
        create_stack(name)  # type: ignore[arg-type]


def test_valid_names() -> None:
    for name in ("a", "A-1", "my_stack-2", "x" * 128):
        create_stack(name)


@pytest.mark.parametrize("name", ["prod", "PROD", "local", "Local"])
def test_duplicate_names(name: str) -> None:
    create_stack("prod")
    with pytest.raises(KitaruUsageError, match="already exists"):
        create_stack(name)


def test_other_kinds_are_not_available() -> None:
    with pytest.raises(
        KitaruFeatureNotAvailableError, match=r"'kubernetes'.*Available kinds: local, ray"
    ):
        create_stack("k8s", kind="kubernetes")
    assert [s.name for s in list_stacks()] == ["local"]


def test_config_must_be_json() -> None:
    with pytest.raises(KitaruUsageError, match="JSON-serializable"):
        create_stack("x", config={"obj": object()})
    with pytest.raises(KitaruUsageError, match="must be a mapping"):
        create_stack("x", config=["a"])  # type: ignore[arg-type]


def test_config_is_copied() -> None:
    config = {"nested": {"a": 1}}
    create_stack("x", config=config)
    config["nested"]["a"] = 2
    assert get_stack_record("x")["config"] == {"nested": {"a": 1}}
    get_stack_record("x")["config"]["nested"]["a"] = 3
    assert get_stack_record("x")["config"] == {"nested": {"a": 1}}


def test_use_stack_by_name_and_id() -> None:
    prod = create_stack("prod")
    assert use_stack("prod") == StackInfo(id=prod.id, name="prod", is_active=True)
    use_stack("local")
    assert current_stack().name == "local"
    assert use_stack(prod.id).name == "prod"
    assert use_stack(prod.id.upper()).name == "prod"
    assert current_stack().name == "prod"


def test_unknown_stack_lists_known_names() -> None:
    create_stack("prod")
    create_stack("dev")
    for call in (use_stack, get_stack, delete_stack):
        with pytest.raises(KitaruUsageError) as excinfo:
            call("nope")
        assert "Known stacks: local, dev, prod" in str(excinfo.value)
    assert find_stack("nope") is None


@pytest.mark.parametrize("bad", ["", "  ", None, 3])
def test_bad_references(bad: object) -> None:
    with pytest.raises(KitaruUsageError, match="stack name or id"):
        use_stack(bad)  # type: ignore[arg-type]


def test_delete_stack() -> None:
    create_stack("old", activate=False)
    delete_stack("old")
    assert [s.name for s in list_stacks()] == ["local"]
    create_stack("old", activate=False)  # the name is free again
    info = get_stack("old")
    delete_stack(info.id)
    assert find_stack("old") is None


def test_delete_active_stack_needs_force() -> None:
    create_stack("prod", activate=True)
    with pytest.raises(KitaruUsageError, match="is the active stack"):
        delete_stack("prod")
    assert current_stack().name == "prod"
    delete_stack("prod", force=True)
    assert current_stack().name == "local"
    assert persisted_active_stack() is None


# --------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------


def test_file_format() -> None:
    info = create_stack("prod", activate=True, config={"k": "v"})
    data = json.loads(global_config_file().read_text())
    assert data["active_stack"] == "prod"
    assert data["stacks"]["prod"]["id"] == info.id
    assert data["stacks"]["prod"]["name"] == "prod"
    assert data["stacks"]["prod"]["kind"] == "local"
    assert data["stacks"]["prod"]["config"] == {"k": "v"}
    assert "local" not in data["stacks"]


def test_persistence_across_a_fresh_process() -> None:
    prod = create_stack("prod")
    use_stack("prod")
    out = _run_python(
        "import json; from kitaru._stacks import list_stacks, current_stack;"
        "print(json.dumps([current_stack().name, current_stack().id,"
        " [s.name for s in list_stacks()]]))"
    )
    assert json.loads(out) == ["prod", prod.id, ["local", "prod"]]

    _run_python(
        "from kitaru._stacks import create_stack, use_stack;"
        "create_stack('from-child'); use_stack('local')"
    )
    assert current_stack().name == "local"
    assert find_stack("from-child") is not None


def test_other_top_level_keys_are_preserved() -> None:
    write_global_config({"log_store": {"backend": "x"}})
    create_stack("prod", activate=True)
    delete_stack("prod", force=True)
    assert read_global_config()["log_store"] == {"backend": "x"}


def test_corrupt_file_is_reported_with_its_path() -> None:
    path = global_config_file()
    path.write_text("{not json")
    with pytest.raises(KitaruBackendError) as excinfo:
        list_stacks()
    message = str(excinfo.value)
    assert str(path) in message
    assert "delete" in message
    with pytest.raises(KitaruBackendError):
        create_stack("x")
    assert path.read_text() == "{not json"  # nothing overwritten


@pytest.mark.parametrize(
    "content",
    [
        "[1, 2]",
        '{"stacks": []}',
        '{"stacks": {"a": 5}}',
        '{"stacks": {"a": {"id": "1", "name": "b"}}}',
    ],
)
def test_malformed_content_is_corrupt(content: str) -> None:
    global_config_file().write_text(content)
    with pytest.raises(KitaruBackendError, match="corrupt"):
        list_stacks()


def test_empty_file_reads_as_empty_config() -> None:
    global_config_file().write_text("")
    assert [s.name for s in list_stacks()] == ["local"]


def test_failed_update_writes_nothing() -> None:
    create_stack("prod")
    before = global_config_file().read_bytes()

    def fail_midway() -> None:
        with update_global_config() as data:
            data["stacks"] = {}
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert global_config_file().read_bytes() == before


def test_no_temp_files_left_behind() -> None:
    for i in range(5):
        create_stack(f"s{i}")
    leftovers = [p.name for p in global_config_file().parent.iterdir() if p.suffix == ".tmp"]
    assert leftovers == []


# --------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------


def test_concurrent_threads_leave_a_valid_file() -> None:
    n_threads, per_thread = 8, 10
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                create_stack(f"t{t}-{i}")
                use_stack(f"t{t}-{i}")
                list_stacks()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    data = json.loads(global_config_file().read_text())
    assert len(data["stacks"]) == n_threads * per_thread
    assert data["active_stack"] in data["stacks"]
    assert len({s.id for s in list_stacks()}) == n_threads * per_thread + 1


def test_concurrent_processes_leave_a_valid_file(tmp_path: Path) -> None:
    n_procs, per_proc = 4, 8
    go = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        "from kitaru._stacks import create_stack, use_stack, list_stacks\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "p = sys.argv[1]\n"
        f"for i in range({per_proc}):\n"
        "    create_stack(f'p{p}-{i}')\n"
        "    use_stack(f'p{p}-{i}')\n"
        "    list_stacks()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(p)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(n_procs)
    ]
    go.touch()  # start them together to maximise contention
    for proc in procs:
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
    data = json.loads(global_config_file().read_text())
    expected = {f"p{p}-{i}" for p in range(n_procs) for i in range(per_proc)}
    assert set(data["stacks"]) == expected
    assert data["active_stack"] in expected
