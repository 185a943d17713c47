"""The store's secret rows (direct SQLite/PostgreSQL and through a server): opaque tokens."""

from __future__ import annotations

from kitaru._store import Store


def test_secret_rows_round_trip_and_guard_concurrent_updates(store: Store) -> None:
    assert store.secret_row("s") is None
    assert store.secret_rows() == []
    created = store.save_secret(
        "s", ciphertext="token-1", keys=["B", "A"], private=False, create_only=True
    )
    assert created is not None
    assert (created["name"], created["keys"]) == ("s", ["A", "B"])
    assert "ciphertext" not in created
    again = store.save_secret("s", ciphertext="x", keys=["A"], private=None, create_only=True)
    assert again is None  # exists: create_only refuses

    row = store.secret_row("s")
    assert row is not None
    assert row["ciphertext"] == "token-1"
    assert store.secret_row(created["id"]) == row
    stale = store.save_secret(
        "s",
        ciphertext="token-3",
        keys=["A"],
        private=None,
        create_only=False,
        expected_ciphertext="not-what-is-stored",
    )
    assert stale is None  # someone else changed it since: the caller reads again
    updated = store.save_secret(
        "s",
        ciphertext="token-2",
        keys=["A", "B", "C"],
        private=True,
        create_only=False,
        expected_ciphertext="token-1",
    )
    assert updated is not None
    assert (updated["keys"], updated["private"]) == (["A", "B", "C"], True)
    assert [r["name"] for r in store.secret_rows()] == ["s"]
    assert "ciphertext" not in store.secret_rows()[0]

    deleted = store.delete_secret_row("s")
    assert deleted is not None
    assert deleted["id"] == created["id"]
    assert store.delete_secret_row("s") is None
    assert store.secret_row("s") is None
