"""The default config directory: Kitaru's Linux fast path gives platformdirs' answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from kitaru import _paths

SRC = Path(__file__).resolve().parents[2] / "src"

linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="the fast path is Linux's; elsewhere platformdirs answers"
)


@linux_only
@pytest.mark.parametrize(
    ("xdg", "home"),
    [
        (None, "/home/ada"),
        (None, "/home/ada/"),
        (None, "/"),
        ("", "/home/ada"),
        ("   ", "/home/ada"),
        ("/srv/xdg", "/home/ada"),
        ("/srv/xdg/", "/home/ada"),
        ("/srv/xdg ", "/home/ada"),
        ("relative/xdg", "/home/ada"),  # platformdirs' to answer
        (None, "relative-home"),  # platformdirs' to answer
    ],
)
def test_the_default_directory_is_platformdirs_one(
    monkeypatch: pytest.MonkeyPatch, xdg: str | None, home: str
) -> None:
    if xdg is None:
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    monkeypatch.setenv("HOME", home)
    try:
        expected: str | Exception = platformdirs.user_config_dir("kitaru")
    except Exception as exc:  # some versions refuse a relative home
        expected = exc
    if isinstance(expected, Exception):
        with pytest.raises(type(expected)):
            _paths._user_config_dir()
    else:
        assert _paths._user_config_dir() == Path(expected)


@linux_only
def test_a_run_on_the_default_directory_does_not_import_platformdirs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITARU_", "XDG_"))}
    env["HOME"] = str(tmp_path)
    env["PYTHONPATH"] = str(SRC)
    script = (
        "import sys, kitaru\n"
        "@kitaru.checkpoint\n"
        "def step(x): return x + 1\n"
        "@kitaru.flow\n"
        "def one(x): return step(x)\n"
        "print(one.run(1).wait(), 'platformdirs' in sys.modules)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["2", "False"]
    assert (tmp_path / ".config" / "kitaru" / "kitaru.db").is_file()
