"""Flow and checkpoint names the stores cannot keep are refused where they are declared.

PostgreSQL keeps names in ``VARCHAR(255)`` (a checkpoint's ``type=`` in ``VARCHAR(64)``):
a longer one used to fail the whole execution when the call was recorded there, and
to pass on SQLite. Now both refuse it at decoration, with the limit named.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kitaru import KitaruUsageError, checkpoint, flow


def _named(name: str) -> Callable[[int], int]:
    def body(x: int) -> int:
        return x

    body.__name__ = body.__qualname__ = name
    return body


@pytest.mark.parametrize("decorator", [checkpoint, flow], ids=["checkpoint", "flow"])
def test_a_name_longer_than_the_store_keeps_is_refused_at_decoration(
    decorator: Callable[[Any], Any],
) -> None:
    decorator(_named("n" * 255))  # the longest kept
    with pytest.raises(KitaruUsageError, match=r"256 characters long; the store keeps at most 255"):
        decorator(_named("n" * 256))


def test_a_type_label_longer_than_the_store_keeps_is_refused() -> None:
    checkpoint(type="t" * 64)(_named("typed"))
    with pytest.raises(KitaruUsageError, match="at most 64 characters"):
        checkpoint(type="t" * 65)(_named("typed"))


def test_a_long_name_runs_on_every_store(any_store: str) -> None:
    step = checkpoint(_named("s" * 255))
    outer = _named("f" * 255)

    def body(x: int) -> int:
        return step(x) + 1

    body.__name__ = body.__qualname__ = outer.__name__
    assert flow(body).run(2).wait(timeout=30) == 3
