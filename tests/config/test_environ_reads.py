"""kitaru._environ.get reads os.environ as os.environ.get does, without its exceptions."""

from __future__ import annotations

import os

import pytest

from kitaru import _environ


def test_it_follows_every_change_made_through_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KITARU_TEST_ENVIRON", raising=False)
    assert _environ.get("KITARU_TEST_ENVIRON") is None
    assert _environ.get("KITARU_TEST_ENVIRON", "fallback") == "fallback"
    monkeypatch.setenv("KITARU_TEST_ENVIRON", "näme ✓")
    assert _environ.get("KITARU_TEST_ENVIRON") == "näme ✓"
    assert _environ.get("KITARU_TEST_ENVIRON", "fallback") == "näme ✓"
    os.environ["KITARU_TEST_ENVIRON"] = ""
    assert _environ.get("KITARU_TEST_ENVIRON", "fallback") == ""
    monkeypatch.delenv("KITARU_TEST_ENVIRON")
    assert _environ.get("KITARU_TEST_ENVIRON") is None


def test_a_replaced_os_environ_is_read_the_public_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", {"KITARU_TEST_ENVIRON": "plain dict"})
    assert _environ.get("KITARU_TEST_ENVIRON") == "plain dict"
    assert _environ.get("KITARU_MISSING", "d") == "d"


def test_a_setting_read_on_every_run_sees_a_change_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from kitaru._runtime.leases import lease_seconds

    monkeypatch.setenv("KITARU_LEASE_SECONDS", "12.5")
    assert lease_seconds() == 12.5
    monkeypatch.delenv("KITARU_LEASE_SECONDS")
    assert lease_seconds() == 30.0
