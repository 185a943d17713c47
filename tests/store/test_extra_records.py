"""The records a plain run does not need are built on first use, and are the same classes
wherever they are reached from; nor does a plain run load OpenSSL (see kitaru._digest)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kitaru._store as store_package
from kitaru._store import records, records_extra
from tests._env import process_env


@pytest.mark.parametrize("name", sorted(records.EXTRA_RECORDS))
def test_an_extra_record_is_one_class_from_every_module(name: str) -> None:
    cls = getattr(records_extra, name)
    assert getattr(records, name) is cls
    assert getattr(store_package, name) is cls
    assert dataclasses.is_dataclass(cls)


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchRecord"):
        _ = records.NoSuchRecord  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="NoSuchRecord"):
        _ = store_package.NoSuchRecord  # type: ignore[attr-defined]


def test_a_plain_run_never_builds_them_nor_loads_openssl(kitaru_home: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from kitaru import checkpoint, flow

        @checkpoint
        def double(x):
            return 2 * x

        @flow
        def twice(x):
            return double(double(x))

        assert twice.run(3).wait() == 12
        print("kitaru._store.records_extra" in sys.modules, "_hashlib" in sys.modules)
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        env=process_env(kitaru_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["False", "False"]
