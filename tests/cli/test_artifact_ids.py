"""Artifact id prefixes: a checkpoint output kept in its call row has the id
``<exec_id>:out:<seq>``, so a prefix of the execution id is a prefix of it too.

``kitaru artifacts show PREFIX`` (any unique 4+ character prefix, as its help
promises) finds such an output, and names the candidates when several match.
"""

from __future__ import annotations

from kitaru import KitaruClient, checkpoint, flow
from tests.cli.conftest import Flows, Invoke


@checkpoint
def twice(x: int) -> int:
    return x * 2


@flow
def two_outputs(x: int = 1) -> int:
    return twice(twice(x))


def test_an_execution_id_prefix_names_its_only_output(
    cli: Invoke, any_store: str, flows: Flows
) -> None:
    handle = flows.module.simple.run(3)
    handle.wait()
    output_id = f"{handle.exec_id}:out:1"
    refs = KitaruClient().artifacts.list(handle.exec_id)
    assert output_id in [ref.artifact_id for ref in refs]  # the flow's one checkpoint output

    for prefix in (handle.exec_id[:8], handle.exec_id[:4], handle.exec_id[:35]):
        shown = cli("artifacts", "show", prefix, "-o", "json")
        assert shown.exit_code == 0, shown
        assert shown.json()["item"]["artifact_id"] == output_id
    assert KitaruClient().artifacts.get(handle.exec_id[:8]).artifact_id == output_id


def test_an_execution_id_prefix_of_several_outputs_is_ambiguous(
    cli: Invoke, any_store: str
) -> None:
    handle = two_outputs.run(1)
    handle.wait()
    prefix = handle.exec_id[:8]
    text = cli("artifacts", "show", prefix)
    assert text.exit_code == 1
    assert text.stdout == ""
    line = text.stderr.strip()
    assert "ambiguous" in line
    assert f"{handle.exec_id}:out:1" in line
    assert f"{handle.exec_id}:out:2" in line

    document = cli("artifacts", "show", prefix, "-o", "json").error_json()
    assert document["error"]["type"] == "KitaruUsageError"
    # The whole id still names one output.
    whole = cli("artifacts", "show", f"{handle.exec_id}:out:2", "-o", "json")
    assert whole.json()["item"]["artifact_id"] == f"{handle.exec_id}:out:2"
