"""Files Kitaru creates are private to the user (0600 files, 0700 directories).

Whatever the umask: each case runs a flow in a fresh process with the umask set first,
then lists the modes of everything under the Kitaru home while the store is still open
(SQLite removes its -wal and -shm files when the last connection closes).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent(
    """
    import json, os, stat, sys
    os.umask(int(sys.argv[1], 8))
    home = sys.argv[2]

    from kitaru import checkpoint, flow
    from kitaru._backend import get_backend


    @checkpoint
    def big() -> str:
        return "z" * 100_000  # above the inline limit: a blob file


    @flow
    def private_flow() -> int:
        return len(big())


    assert private_flow.run().wait(timeout=120) == 100_000
    backend = get_backend()
    with backend.store.engine.connect() as conn:  # the store stays open while we look
        conn.exec_driver_sql("SELECT 1")
        modes = {}
        for directory, dirs, files in os.walk(home):
            for name in dirs + files:
                path = os.path.join(directory, name)
                modes[os.path.relpath(path, home)] = stat.S_IMODE(os.lstat(path).st_mode)
        modes["."] = stat.S_IMODE(os.stat(home).st_mode)
    print(json.dumps(modes))
    """
)


def _modes(home: Path, umask: int, extra_env: dict[str, str]) -> dict[str, int]:
    env = {**os.environ, **extra_env, "KITARU_CONFIG_PATH": str(home)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, oct(umask), str(home)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modes: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return modes


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_store_blobs_and_dirs_are_private(store_url: str, tmp_path: Path, umask: int) -> None:
    # A home whose parents do not exist yet: Kitaru creates the whole chain.
    home = tmp_path / "new" / "kitaru-home"
    env = {} if store_url.startswith("sqlite") else {"KITARU_STORE_URL": store_url}
    modes = _modes(home, umask, env)

    blobs = [p for p in modes if p.startswith("artifacts/") and p.count("/") == 2]
    assert blobs, modes
    if store_url.startswith("sqlite"):
        for name in ("kitaru.db", "kitaru.db-wal", "kitaru.db-shm"):
            assert name in modes, sorted(modes)
    wrong = {
        path: oct(mode)
        for path, mode in modes.items()
        if mode != (0o700 if _is_dir(home, path) else 0o600)
    }
    assert wrong == {}
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def _is_dir(home: Path, relative: str) -> bool:
    return (home / relative).is_dir()


def test_an_existing_store_file_keeps_its_mode(tmp_path: Path) -> None:
    """Kitaru does not change the mode of files it did not create (shared on purpose)."""
    home = tmp_path / "kitaru-home"
    home.mkdir(mode=0o750)
    os.chmod(home, 0o750)
    db = home / "kitaru.db"
    db.touch()
    os.chmod(db, 0o640)
    modes = _modes(home, 0o022, {})
    assert modes["."] == 0o750
    assert modes["kitaru.db"] == 0o640
    assert modes["artifacts"] == 0o700
