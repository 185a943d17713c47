"""0.21's UI compare links: the dashboard's comparison page, or None without a server."""

from __future__ import annotations

import pytest

import kitaru
from kitaru import checkpoint, flow
from kitaru.errors import KitaruUsageError


@checkpoint
def double(x: int) -> int:
    return 2 * x


@flow
def doubling(x: int) -> int:
    return double(x)


def test_links_open_the_dashboards_comparison() -> None:
    url = kitaru.build_compare_url(
        server_url="https://kitaru.example:8080/",
        flow_id="doubling",
        original_exec_id="a1",
        replay_exec_id="b2",
    )
    assert url == "https://kitaru.example:8080/#/compare/a1/b2"
    # 0.21's other arguments are taken; more than two ids: the first two, then the rest.
    assert (
        kitaru.build_compare_url_for_executions(
            server_url="http://h",
            flow_id="doubling",
            exec_ids=[" a ", "b", "", "c", "d/e"],
            flow_version="v3",
            project_name_or_id="p",
        )
        == "http://h/#/compare/a/b?more=c,d%2Fe"
    )
    assert kitaru.build_compare_urls(
        server_url="http://h", flow_id="f", original_exec_id="o", replay_exec_ids=["r1", "r2"]
    ) == ["http://h/#/compare/o/r1", "http://h/#/compare/o/r2"]


@pytest.mark.parametrize(
    "arguments",
    [
        {"server_url": None, "flow_id": "f", "exec_ids": ["a", "b"]},  # no UI
        {"server_url": "http://h", "flow_id": None, "exec_ids": ["a", "b"]},  # as in 0.21
        {"server_url": "http://h", "flow_id": "f", "exec_ids": ["a", " "]},  # one id
    ],
)
def test_no_link_without_a_server_a_flow_or_two_ids(arguments: dict[str, object]) -> None:
    assert kitaru.build_compare_url_for_executions(**arguments) is None  # type: ignore[arg-type]
    assert (
        kitaru.build_compare_urls(
            server_url=arguments["server_url"],  # type: ignore[arg-type]
            flow_id=arguments["flow_id"],  # type: ignore[arg-type]
            original_exec_id="a",
            replay_exec_ids=[],
        )
        == []
    )


def test_a_string_of_ids_is_refused() -> None:
    with pytest.raises(KitaruUsageError, match="list of strings"):
        kitaru.build_compare_url_for_executions(server_url="http://h", flow_id="f", exec_ids="ab")


def test_a_store_read_directly_has_no_dashboard(any_store: str) -> None:
    first, second = doubling.run(1), doubling.run(2)
    first.wait()
    second.wait()
    assert kitaru.compare_url_for_executions([first.exec_id, second.exec_id]) is None
    assert kitaru.diff(first.exec_id, second.exec_id).urls == []
    # Nothing to link to, so nothing is looked up: unknown ids give None too.
    assert kitaru.compare_url_for_executions(["nope", "other"]) is None
