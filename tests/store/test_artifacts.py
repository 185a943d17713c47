"""The artifact index: lookups and list filters."""

from __future__ import annotations

import pytest

from kitaru._store import Store
from kitaru._store.records import ArtifactRecord

from ._support import Records, new_id


@pytest.fixture
def indexed(store: Store, records: Records) -> dict[str, ArtifactRecord]:
    """Artifacts of two executions: outputs, saved values, a flow result."""
    exec_a, exec_b = records.execution(), records.execution()
    store.create_execution(exec_a)
    store.create_execution(exec_b)
    made = {
        "a_load": records.artifact(exec_a.id, "load", name="load"),
        "a_prompt": records.artifact(
            exec_a.id, "train", name="prompt", kind="saved", type="prompt", tags=["llm"]
        ),
        "a_train": records.artifact(exec_a.id, "train", name="train"),
        "b_load": records.artifact(exec_b.id, "load", name="load"),
        "b_result": records.artifact(exec_b.id, None, name="result", kind="flow_result"),
        "b_context": records.artifact(
            exec_b.id, "load", name="prompt", kind="saved", type="context"
        ),
    }
    # Saved values are written along with the call they were saved in, whose output is
    # another artifact.
    output_of = {"a_load": "a_load", "a_prompt": "a_train", "a_train": "a_train"}
    output_of.update({"b_load": "b_load", "b_context": "b_load"})
    for key, output_key in output_of.items():
        artifact, output = made[key], made[output_key]
        assert artifact.exec_id is not None
        assert artifact.call_id is not None
        call = records.call(artifact.exec_id, artifact.call_id, artifact=output)
        store.record_call(call, artifact=artifact)
    assert store.finish_execution(exec_b.id, status=exec_b.status, result=made["b_result"])
    return made


def _keys(found: list[ArtifactRecord], made: dict[str, ArtifactRecord]) -> list[str]:
    by_id = {artifact.id: key for key, artifact in made.items()}
    return [by_id[artifact.id] for artifact in found]


def test_get_artifact_round_trips_every_field(store: Store, records: Records) -> None:
    execution = records.execution()
    store.create_execution(execution)
    artifact = records.artifact(
        execution.id,
        "embed:3",
        name="embeddings",
        kind="saved",
        type="blob",
        serializer="numpy",
        type_path="numpy.ndarray",
        inline_data=b"\x93NUMPY\x01\x00",
        uri="memory://bucket/embeddings",
        tags=["vector", "v1"],
        created_at=1_731_234_567.654321,
    )
    store.record_call(records.call(execution.id, "embed:3", artifact=artifact), artifact=artifact)
    loaded = store.get_artifact(artifact.id)
    assert loaded == artifact
    assert loaded is not None
    assert type(loaded.inline_data) is bytes


def test_get_unknown_artifact(store: Store) -> None:
    assert store.get_artifact(new_id()) is None


def test_list_artifacts_filters(store: Store, indexed: dict[str, ArtifactRecord]) -> None:
    exec_a = indexed["a_load"].exec_id
    exec_b = indexed["b_load"].exec_id
    # Ordered by creation time.
    assert _keys(store.list_artifacts(), indexed) == list(indexed)
    assert _keys(store.list_artifacts(exec_id=exec_a), indexed) == [
        "a_load",
        "a_prompt",
        "a_train",
    ]
    assert _keys(store.list_artifacts(exec_id=exec_b), indexed) == [
        "b_load",
        "b_result",
        "b_context",
    ]
    assert _keys(store.list_artifacts(name="load"), indexed) == ["a_load", "b_load"]
    assert _keys(store.list_artifacts(name="prompt"), indexed) == ["a_prompt", "b_context"]
    assert _keys(store.list_artifacts(kind="saved"), indexed) == ["a_prompt", "b_context"]
    assert _keys(store.list_artifacts(kind="flow_result"), indexed) == ["b_result"]
    assert _keys(store.list_artifacts(call_id="train"), indexed) == ["a_prompt", "a_train"]
    assert _keys(store.list_artifacts(call_id="load"), indexed) == [
        "a_load",
        "b_load",
        "b_context",
    ]


def test_list_artifacts_combined_filters_and_limit(
    store: Store, indexed: dict[str, ArtifactRecord]
) -> None:
    exec_a = indexed["a_load"].exec_id
    assert _keys(store.list_artifacts(exec_id=exec_a, name="prompt"), indexed) == ["a_prompt"]
    assert _keys(store.list_artifacts(exec_id=exec_a, kind="output"), indexed) == [
        "a_load",
        "a_train",
    ]
    assert _keys(store.list_artifacts(exec_id=exec_a, call_id="train", kind="output"), indexed) == [
        "a_train"
    ]
    assert _keys(store.list_artifacts(name="prompt", kind="output"), indexed) == []
    assert store.list_artifacts(exec_id=new_id()) == []
    assert _keys(store.list_artifacts(limit=2), indexed) == ["a_load", "a_prompt"]
    assert _keys(store.list_artifacts(name="load", limit=1), indexed) == ["a_load"]
    assert store.list_artifacts(exec_id=exec_a)[1] == indexed["a_prompt"]  # full records
