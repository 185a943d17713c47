"""``Deferred``: a list read in on first use, indistinguishable from the list it stands for."""

from __future__ import annotations

import copy
import pickle

import pytest

from kitaru.client._deferred import Deferred


def _counting(items: list[int]) -> tuple[Deferred[int], list[int]]:
    loads: list[int] = []

    def load() -> list[int]:
        loads.append(1)
        return list(items)

    return Deferred(load), loads


def test_nothing_is_read_until_the_list_is_used() -> None:
    deferred, loads = _counting([3, 1, 2])
    assert loads == []
    assert len(deferred) == 3
    assert loads == [1]
    assert list(deferred) == [3, 1, 2]
    assert loads == [1]  # read once


@pytest.mark.parametrize(
    ("use", "expected"),
    [
        (lambda d: d[0], 3),
        (lambda d: d[-1], 2),
        (lambda d: d[1:], [1, 2]),
        (lambda d: 1 in d, True),
        (lambda d: bool(d), True),
        (lambda d: d == [3, 1, 2], True),
        (lambda d: d != [3, 1, 2], False),
        (lambda d: sorted(d), [1, 2, 3]),
        (lambda d: list(reversed(d)), [2, 1, 3]),
        (lambda d: d.index(1), 1),
        (lambda d: d.count(2), 1),
        (lambda d: repr(d), "[3, 1, 2]"),
        (lambda d: d + [4], [3, 1, 2, 4]),  # noqa: RUF005 (list.__add__ itself)
        (lambda d: d.copy(), [3, 1, 2]),
        (lambda d: copy.deepcopy(d), [3, 1, 2]),
        (lambda d: pickle.loads(pickle.dumps(d)), [3, 1, 2]),
        (lambda d: [x * 2 for x in d], [6, 2, 4]),
    ],
)
def test_every_read_sees_the_items(use: object, expected: object) -> None:
    deferred, _ = _counting([3, 1, 2])
    assert use(deferred) == expected  # type: ignore[operator]


def test_writes_apply_to_the_read_items() -> None:
    deferred, _ = _counting([3, 1, 2])
    deferred.append(4)
    assert deferred == [3, 1, 2, 4]
    other, _ = _counting([5])
    other.sort()
    other.extend([1])
    assert other == [5, 1]


def test_an_empty_deferred_list_is_falsy_and_equal_to_another() -> None:
    empty, _ = _counting([])
    assert not empty
    same, _ = _counting([])
    assert empty == same
