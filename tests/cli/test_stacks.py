"""kitaru stack list|current|use|create|delete|show."""

from __future__ import annotations

import json

from tests.cli.conftest import Invoke

LOCAL_ID = "66f58154-ec79-5c2c-b1cb-7adcb407c661"


def test_list_shows_local_as_active(cli: Invoke) -> None:
    result = cli("stack", "list")
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if "local" in line)
    assert "*" in line
    assert LOCAL_ID in line

    document = cli("stack", "list", "-o", "json").json()
    assert document == {
        "command": "stack.list",
        "items": [
            {
                "id": LOCAL_ID,
                "name": "local",
                "is_active": True,
                "kind": "local",
                "is_managed": False,
            }
        ],
        "count": 1,
    }


def test_create_use_current_show_delete(cli: Invoke) -> None:
    created = cli("stack", "create", "prod", "--no-activate", "-o", "json")
    assert created.exit_code == 0, created.stderr
    item = created.json()["item"]
    assert item["name"] == "prod"
    assert item["is_active"] is False

    assert "Created stack dev" in cli("stack", "create", "dev", "--no-activate").stdout

    listed = cli("stack", "list", "-o", "json").json()
    assert [s["name"] for s in listed["items"]] == ["local", "dev", "prod"]
    assert listed["count"] == 3

    used = cli("stack", "use", "prod")
    assert used.exit_code == 0
    assert "Active stack is now prod" in used.stdout

    current = cli("stack", "current", "-o", "json").json()
    assert current["command"] == "stack.current"
    assert current["item"]["name"] == "prod"
    assert "Active stack: prod" in cli("stack", "current").stdout

    shown = cli("stack", "show", "prod", "-o", "json").json()["item"]
    assert shown["name"] == "prod"
    assert shown["is_active"] is True
    assert shown["config"] == {}
    assert shown["created_at"]
    assert (shown["stack_type"], shown["components"]) == ("local", {})  # 0.21's keys
    assert "prod" in cli("stack", "show", item["id"]).stdout

    # The active stack needs --force; then local becomes active again.
    refused = cli("stack", "delete", "prod")
    assert refused.exit_code == 1
    assert "--force" in refused.stderr
    forced = cli("stack", "delete", "prod", "--force", "-o", "json")
    assert forced.exit_code == 0
    assert forced.json()["item"]["deleted"] is True
    assert forced.json()["item"]["active_stack"] == "local"
    assert cli("stack", "current", "-o", "json").json()["item"]["name"] == "local"

    deleted = cli("stack", "delete", "dev")
    assert deleted.exit_code == 0
    assert "Deleted stack dev" in deleted.stdout
    assert cli("stack", "list", "-o", "json").json()["count"] == 1


def test_create_with_activate(cli: Invoke) -> None:
    result = cli("stack", "create", "fast", "--activate")
    assert result.exit_code == 0
    assert "now the active stack" in result.stdout
    assert cli("stack", "current", "-o", "json").json()["item"]["name"] == "fast"


def test_unknown_stack_is_one_line_listing_known_stacks(cli: Invoke, kitaru_proc: Invoke) -> None:
    cli("stack", "create", "alpha")
    results = [kitaru_proc("stack", "use", "nope")]  # once as a real process
    results += [cli("stack", "show", "nope"), cli("stack", "delete", "nope")]
    for result in results:
        assert result.exit_code == 1
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("Error: ")
        assert "'nope'" in lines[0]
        assert "Known stacks: local, alpha" in lines[0]


def test_stack_errors_in_json(cli: Invoke) -> None:
    result = cli("stack", "use", "ghost", "-o", "json")
    assert result.exit_code == 1
    document = result.error_json()
    assert document["command"] == "stack.use"
    assert document["error"]["type"] == "KitaruUsageError"
    assert "ghost" in document["error"]["message"]


def test_invalid_and_duplicate_names(cli: Invoke) -> None:
    bad = cli("stack", "create", "no spaces")
    assert bad.exit_code == 1
    assert "Invalid stack name" in bad.stderr
    cli("stack", "create", "dup")
    again = cli("stack", "create", "DUP")
    assert again.exit_code == 1
    assert "already exists" in again.stderr


def test_local_cannot_be_deleted(cli: Invoke) -> None:
    result = cli("stack", "delete", "local")
    assert result.exit_code == 1
    assert "built in" in result.stderr


def test_missing_argument_is_usage_error(cli: Invoke) -> None:
    result = cli("stack", "use")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Missing argument")


def test_deleted_stack_does_not_claim_to_be_active(cli: Invoke) -> None:
    assert cli("stack", "create", "x1").exit_code == 0  # created and activated
    deleted = cli("stack", "delete", "x1", "--force", "-o", "json")
    assert deleted.exit_code == 0, deleted.stderr
    item = deleted.json()["item"]
    assert item["deleted_stack"] == "x1"
    assert item["is_active"] is False
    assert item["was_active"] is True
    assert item["new_active_stack"] == "local"


def test_a_dangling_active_stack_is_reported(cli: Invoke) -> None:
    from kitaru._paths import global_config_file

    path = global_config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"active_stack": "nope", "stacks": {}}))

    current = cli("stack", "current")
    assert current.exit_code == 0, current.stderr
    assert "Active stack: local" in current.stdout
    warning = current.stderr.strip()
    assert warning.startswith("Warning: ")
    assert "'nope'" in warning
    assert "does not exist" in warning
    assert "kitaru stack use" in warning
    item = cli("stack", "current", "-o", "json").json()["item"]
    assert item["name"] == "local"
    assert "'nope'" in item["problem"]

    status = cli("status", "-o", "json").json()["item"]
    assert "'nope'" in status["active_stack_problem"]
    assert "'nope'" in " ".join(cli("status").stdout.split())
    assert "'nope'" in cli("info", "-o", "json").json()["item"]["active_stack_problem"]

    # A stack that exists again: no problem.
    assert cli("stack", "create", "nope", "--no-activate").exit_code == 0
    assert cli("stack", "current", "-o", "json").json()["item"]["problem"] is None
    assert cli("stack", "current").stderr == ""
    assert cli("status", "-o", "json").json()["item"]["active_stack_problem"] is None
