"""kitaru._digest.sha256 gives hashlib's digests, whichever implementation serves them."""

from __future__ import annotations

import hashlib
import os

import pytest

from kitaru import _digest


@pytest.mark.parametrize("size", [0, 1, 55, 64, _digest.SHORT - 1, _digest.SHORT, 257, 70_000])
def test_the_same_digest_as_hashlib_at_every_size(size: int) -> None:
    data = os.urandom(size)
    ours = _digest.sha256(data)
    assert ours.hexdigest() == hashlib.sha256(data).hexdigest()
    assert ours.digest() == hashlib.sha256(data).digest()


def test_short_inputs_do_not_need_openssl() -> None:
    short = type(_digest.sha256(b"x" * _digest.SHORT))
    long = type(_digest.sha256(b"x" * (_digest.SHORT + 1)))
    assert long is type(hashlib.sha256())
    assert short is not long  # CPython's own module, which needs no OpenSSL start-up
