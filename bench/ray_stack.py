"""Ray stack overheads: dispatch, isolated checkpoints, fan-out across two nodes.

Usage::

    .venv/bin/python bench/ray_stack.py [--rounds R] [--fanout N] [--skip-fanout]

Starts its own 2-node Ray cluster on loopback (``ray.cluster_utils.Cluster``,
``node_ip_address=127.0.0.1``; stopped through the processes it started, never
``ray stop``) and an embedded store in a temporary directory. Three sections:

1. **Dispatch.** An empty flow's ``.run().wait()`` on the local stack vs on the ray
   stack (record, start a detached actor in a fresh worker process, claim, run,
   record). Median of R rounds after one warm-up run each.
2. **Isolated checkpoint.** A no-op ``runtime="isolated"`` checkpoint on the ray
   stack (a Ray task; the first one starts a worker process, later ones reuse it)
   vs on the local stack (a fresh interpreter every call), timed around each call
   in the flow body: the first call, and the median of the others.
3. **Fan-out.** N isolated checkpoints that sleep 1 s, ``.map()``-ed across the two
   nodes (4 CPUs each, one taken by the execution): wall time and speed-up over N s.

Reporting only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is imported

FLOWS = """
import time
from kitaru import checkpoint, flow

@checkpoint(runtime="isolated")
def noop(i):
    return i

@checkpoint(runtime="isolated")
def sleepy(i):
    time.sleep(1)
    return i

@flow(cache=False)
def empty():
    return 0

@flow(cache=False)
def isolated_calls(k):
    times = []
    for i in range(k):
        started = time.perf_counter()
        noop(i)
        times.append(time.perf_counter() - started)
    return times

@flow(cache=False, max_concurrency=64)
def fan_out(n):
    return [f.result() for f in sleepy.map(range(n))]
"""


def _median_run(flow: object, rounds: int, *args: object, stack: str) -> float:
    flow.run(*args, stack=stack).wait(timeout=600)  # type: ignore[attr-defined]  # warm-up
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        flow.run(*args, stack=stack).wait(timeout=600)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=11, help="calls in the isolated section")
    parser.add_argument("--fanout", type=int, default=64)
    parser.add_argument("--skip-fanout", action="store_true")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="kitaru-bench-ray-"))
    os.environ["KITARU_CONFIG_PATH"] = str(workdir / "home")
    project = workdir / "project"
    project.mkdir()
    (project / "bench_ray_flows.py").write_text(textwrap.dedent(FLOWS))
    sys.path.insert(0, str(project))

    from ray.cluster_utils import Cluster

    started = time.perf_counter()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 4, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    cluster.add_node(num_cpus=4, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    print(f"cluster of 2 nodes up in {time.perf_counter() - started:.1f} s")
    try:
        import bench_ray_flows as flows

        import kitaru

        kitaru.create_stack("bench", kind="ray", address=cluster.address, activate=False)
        rows: list[tuple[str, str]] = []

        local = _median_run(flows.empty, options.rounds, stack="local")
        remote = _median_run(flows.empty, options.rounds, stack="bench")
        rows.append(("empty flow .run().wait(), local stack", f"{local * 1000:.1f} ms"))
        rows.append(("empty flow .run().wait(), ray stack", f"{remote * 1000:.0f} ms"))
        rows.append(("dispatch overhead of the ray stack", f"+{(remote - local) * 1000:.0f} ms"))

        k = options.calls
        for stack in ("local", "bench"):
            times = flows.isolated_calls.run(k, stack=stack).wait(timeout=600)
            label = "local subprocess" if stack == "local" else "Ray task"
            first, rest = times[0], statistics.median(times[1:])
            rows.append(
                (
                    f"isolated no-op checkpoint, {label} (first / median of the next {k - 1})",
                    f"{first * 1000:.0f} / {rest * 1000:.0f} ms",
                )
            )

        if not options.skip_fanout:
            n = options.fanout
            begin = time.perf_counter()
            flows.fan_out.run(n, stack="bench").wait(timeout=1800)
            wall = time.perf_counter() - begin
            rows.append(
                (
                    f"fan-out {n} x 1 s isolated across 2 nodes (7 free CPUs)",
                    f"{wall:.1f} s = {n / wall:.1f}x speed-up (ideal 7x)",
                )
            )
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            print(f"{label.ljust(width)}  {value}")
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
