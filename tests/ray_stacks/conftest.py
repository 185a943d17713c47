"""One real Ray cluster on loopback for every Ray test of the session.

Started with ``ray.cluster_utils.Cluster`` (head + one worker node, both on
127.0.0.1, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in every Ray process's
environment) and stopped through the processes it started: never ``ray stop``,
which would kill every Ray process on the host. Test modules here carry the
``xdist_group("ray")`` mark (``pytestmark``), so under ``pytest -n N --dist
loadgroup`` (what ``./dev test`` runs; see the grouping hook in tests/conftest.py)
they share one xdist worker and one cluster.
"""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# Read by Ray when it is imported: set before anything imports ray.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

FlowsFactory = Callable[[str], ModuleType]

RAY_SKIP_REASON = (
    "Ray tests need the ray extra: pip install -e '.[ray]' (the dev extra includes it)"
)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A 2-node Ray cluster running on this machine (a ``ray.cluster_utils.Cluster``).

    Its head also runs a Ray Client server (``ray_client_address``).
    """
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but Ray is missing. {RAY_SKIP_REASON}")
        pytest.skip(RAY_SKIP_REASON)
    # The cluster's processes must not inherit one test's Kitaru settings.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("KITARU_")}
    try:
        import socket

        with socket.socket() as probe:  # a free port for the head's Ray Client server
            probe.bind(("127.0.0.1", 0))
            client_port = probe.getsockname()[1]
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 4,
                "node_ip_address": "127.0.0.1",
                "include_dashboard": False,
                "ray_client_server_port": client_port,
            },
        )
        cluster.kitaru_client_address = f"ray://127.0.0.1:{client_port}"
        cluster.add_node(num_cpus=4, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
    finally:
        os.environ.update(saved)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()  # kills the processes this cluster started, by pid


@pytest.fixture
def ray_address(ray_cluster: Any) -> str:
    """The GCS address of the session's cluster."""
    return str(ray_cluster.address)


@pytest.fixture
def ray_client_address(ray_cluster: Any) -> str:
    """The Ray Client address (``ray://``) of the session's cluster."""
    return str(ray_cluster.kitaru_client_address)


@pytest.fixture
def ray_stack(ray_address: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ray stack on the session's cluster; short leases so cancels are seen fast."""
    import kitaru

    monkeypatch.setenv("KITARU_LEASE_SECONDS", "3")
    kitaru.create_stack("cluster", kind="ray", address=ray_address, activate=False)
    return "cluster"


@pytest.fixture
def flows(tmp_path: Path) -> Iterator[FlowsFactory]:
    """Write flow code to a project directory and import it (as the user's own module)."""
    loaded: list[str] = []

    def make(source: str) -> ModuleType:
        project = tmp_path / "project"
        project.mkdir(exist_ok=True)
        name = f"ray_flows_{uuid.uuid4().hex[:8]}"
        (project / f"{name}.py").write_text(textwrap.dedent(source))
        sys.path.insert(0, str(project))
        loaded.append(name)
        import importlib

        return importlib.import_module(name)

    yield make
    for name in loaded:
        sys.modules.pop(name, None)
    project = str(tmp_path / "project")
    while project in sys.path:
        sys.path.remove(project)
