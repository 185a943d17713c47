"""Executions on a ray stack, against the real Ray cluster of ``conftest.ray_address``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import KitaruClient
from kitaru._stacks._ray_env import kitaru_package_dir
from kitaru._store import ExecutionStatus
from kitaru.errors import (
    KitaruExecutionError,
    KitaruStackNotRemoteExecutableUsageError,
    KitaruUsageError,
)
from tests.ray_stacks.conftest import FlowsFactory

# One xdist worker runs them all (with --dist loadgroup), so one cluster serves them.
pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray"), pytest.mark.timeout(300)]


def _until(check: object, what: str, limit: float = 120.0) -> None:
    """Poll ``check()`` until true; a guard against hanging, not a speed assertion."""
    deadline = time.monotonic() + limit
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_run_returns_at_once_and_wait_gets_the_result(ray_stack: str, flows: FlowsFactory) -> None:
    module = flows(
        """
        import os
        from kitaru import checkpoint, flow

        @checkpoint
        def double(x):
            print(f"doubling {x}")
            return {"value": x * 2, "pid": os.getpid()}

        @flow
        def agent(x):
            return double(x)
        """
    )
    handle = module.agent.run(21, stack=ray_stack)
    result = handle.wait(timeout=240)
    assert result["value"] == 42
    assert result["pid"] != os.getpid()  # ran in a Ray worker, not here
    assert handle.status is ExecutionStatus.COMPLETED
    assert handle.get() == result

    client = KitaruClient()
    execution = client.executions.get(handle.exec_id)
    assert execution.stack_name == ray_stack
    assert execution.run_count == 1
    assert execution.config["ray"]["address"]
    assert [c.call_id for c in execution.checkpoints] == ["double"]
    lines = [entry.message for entry in client.executions.logs(handle.exec_id)]
    assert "doubling 21" in lines


def test_the_submitting_process_may_exit_at_once(ray_stack: str, tmp_path: Path) -> None:
    project = tmp_path / "submitter"
    project.mkdir()
    script = project / "submit.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from kitaru import checkpoint, flow

            @checkpoint
            def slow(x):
                time.sleep(2)
                return x + 1

            @flow
            def agent(x):
                return slow(slow(x))

            if __name__ == "__main__":
                handle = agent.run(1, stack=sys.argv[1])
                print(handle.exec_id, flush=True)
            """
        )
    )
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run(
        [sys.executable, str(script), ray_stack],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    exec_id = done.stdout.strip().splitlines()[-1]
    # The submitter is gone; the execution goes on on the cluster.
    execution = KitaruClient().executions.wait(exec_id, timeout=240)
    assert execution.status is ExecutionStatus.COMPLETED
    assert KitaruClient().executions.get(exec_id).checkpoints[-1].output is not None
    assert kitaru.FlowHandle(exec_id).get() == 3


def test_worker_killed_mid_checkpoint_resumes_without_rerunning_completed_ones(
    ray_stack: str, flows: FlowsFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    module = flows(
        f"""
        import os, time
        from pathlib import Path
        from kitaru import checkpoint, flow

        MARKS = Path({str(marks)!r})

        def mark(name):
            with open(MARKS / "ran.txt", "a") as f:
                f.write(name + "\\n")

        @checkpoint
        def first():
            mark("first")
            return 1

        @checkpoint
        def second(x):
            mark("second")
            if not (MARKS / "killed").exists():
                (MARKS / "pid").write_text(str(os.getpid()))
                time.sleep(120)  # killed here
            return x + 1

        @checkpoint
        def third(x):
            mark("third")
            return x + 1

        @flow
        def agent():
            return third(second(first()))
        """
    )
    handle = module.agent.run(stack=ray_stack)
    _until(lambda: (marks / "pid").exists(), "the checkpoint to start")
    pid = int((marks / "pid").read_text())
    (marks / "killed").write_text("")
    os.kill(pid, signal.SIGKILL)

    assert handle.wait(timeout=240) == 3
    ran = (marks / "ran.txt").read_text().split()
    # The completed checkpoint ran once; the killed one again; the rest once.
    assert ran == ["first", "second", "second", "third"]
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.run_count == 2
    assert [c.call_id for c in execution.checkpoints] == ["first", "second", "third"]
    assert all(c.status is ExecutionStatus.COMPLETED for c in execution.checkpoints)


def test_cancel_stops_the_execution_and_its_ray_tasks(
    ray_stack: str, flows: FlowsFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    module = flows(
        f"""
        import os, time
        from pathlib import Path
        from kitaru import checkpoint, flow

        MARKS = Path({str(marks)!r})

        @checkpoint(runtime="isolated")
        def stuck(i):
            (MARKS / f"pid-{{i}}").write_text(str(os.getpid()))
            time.sleep(300)
            return i

        @checkpoint
        def after(values):
            (MARKS / "after").write_text("ran")
            return values

        @flow
        def agent():
            return after([f.result() for f in [stuck.submit(0), stuck.submit(1)]])
        """
    )
    handle = module.agent.run(stack=ray_stack)
    _until(
        lambda: (marks / "pid-0").exists() and (marks / "pid-1").exists(),
        "both isolated tasks to start",
    )
    pids = [int((marks / f"pid-{i}").read_text()) for i in (0, 1)]
    KitaruClient().executions.cancel(handle.exec_id)

    with pytest.raises(KitaruExecutionError):
        handle.wait(timeout=60)
    assert handle.status is ExecutionStatus.CANCELLED
    _until(lambda: not any(_pid_alive(p) for p in pids), "the Ray tasks to be stopped")
    import ray

    from kitaru._stacks.ray import NAMESPACE, actor_name

    def actor_gone() -> bool:
        try:
            ray.get_actor(actor_name(handle.exec_id), namespace=NAMESPACE)
        except ValueError:
            return True
        return False

    _until(actor_gone, "the execution's actor to end")
    assert not (marks / "after").exists()
    assert handle.status is ExecutionStatus.CANCELLED


def test_isolated_checkpoints_fan_out_as_ray_tasks(
    ray_address: str, flows: FlowsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 CPUs each: the execution takes 2 of a node's 4, so 4 overlapping isolated
    # calls cannot all run on one node.
    kitaru.create_stack("wide", kind="ray", address=ray_address, num_cpus=2, activate=False)
    module = flows(
        """
        import os, time
        import ray
        from kitaru import checkpoint, flow

        @checkpoint(runtime="isolated")
        def work(i):
            time.sleep(1.5)
            ctx = ray.get_runtime_context()
            print(f"work {i}")
            return {"i": i * i, "pid": os.getpid(), "node": ctx.get_node_id(),
                    "task": ctx.get_task_id()}

        @flow(max_concurrency=4)
        def agent():
            return {"runner": os.getpid(), "calls": [f.result() for f in work.map(range(4))]}
        """
    )
    handle = module.agent.run(stack="wide")
    result = handle.wait(timeout=240)
    calls = result["calls"]
    assert [c["i"] for c in calls] == [0, 1, 4, 9]
    assert all(c["task"] for c in calls)  # each call was a Ray task
    assert all(c["pid"] != result["runner"] for c in calls)
    assert len({c["node"] for c in calls}) == 2  # spread over both nodes
    logs = KitaruClient().executions.logs(handle.exec_id)
    assert sorted((e.checkpoint_name, e.message) for e in logs) == [
        ("work", f"work {i}") for i in range(4)
    ]


def test_image_requirements_and_environment(ray_stack: str, flows: FlowsFactory) -> None:
    with pytest.raises(ImportError):  # a package the test's own venv lacks
        import termcolor  # noqa: F401
    module = flows(
        """
        import os
        from kitaru import checkpoint, flow

        @checkpoint
        def probe():
            import termcolor
            return {
                "termcolor": termcolor.__name__,
                "plain": os.environ.get("GREETING"),
                "secret": os.environ.get("SERVICE_API_KEY"),
            }

        @checkpoint(runtime="isolated")  # a Ray task of its own: the same environment
        def probe_isolated():
            return [os.environ.get("GREETING"), os.environ.get("SERVICE_API_KEY")]

        @flow
        def agent():
            return {**probe(), "isolated": probe_isolated()}
        """
    )
    handle = module.agent.run(
        stack=ray_stack,
        image={
            "requirements": ["termcolor==3.3.0"],
            "environment": {"GREETING": "hello", "SERVICE_API_KEY": "sk-not-for-logs"},
        },
    )
    assert handle.wait(timeout=240) == {
        "termcolor": "termcolor",
        "plain": "hello",
        "secret": "sk-not-for-logs",
        "isolated": ["hello", "sk-not-for-logs"],
    }
    config = KitaruClient().executions.get(handle.exec_id).config
    runtime_env = config["ray"]["runtime_env"]
    assert runtime_env["pip"] == ["termcolor==3.3.0"]  # no 'kitaru' from an index
    assert runtime_env["env_vars"] == {"GREETING": "hello"}  # the secret is not an env var
    assert runtime_env["kitaru_secret_env"] == ["SERVICE_API_KEY"]
    assert kitaru_package_dir() in runtime_env["py_modules"]  # Kitaru itself, from here
    assert "sk-not-for-logs" not in json.dumps(config)


@pytest.mark.parametrize(
    ("image", "field"),
    [({"apt_packages": ["curl"]}, "apt_packages"), ({"dockerfile": "Dockerfile"}, "dockerfile")],
)
def test_image_fields_ray_cannot_honour_fail_at_run(
    ray_stack: str, flows: FlowsFactory, image: dict[str, object], field: str
) -> None:
    module = flows(
        """
        from kitaru import flow

        @flow
        def agent():
            return 1
        """
    )
    with pytest.raises(KitaruUsageError, match=rf"image\.{field}.*base_image"):
        module.agent.run(stack=ray_stack, image=image)
    assert KitaruClient().executions.list() == []


def test_unreachable_artifact_root_fails_at_run(ray_stack: str, flows: FlowsFactory) -> None:
    module = flows(
        """
        from kitaru import flow

        @flow
        def agent():
            return 1
        """
    )
    kitaru.configure(artifacts_root="memory://kitaru-artifacts")
    with pytest.raises(KitaruStackNotRemoteExecutableUsageError, match="artifact root"):
        module.agent.run(stack=ray_stack)
    assert KitaruClient().executions.list() == []


def test_stack_artifact_store_must_be_the_one_in_use(
    ray_address: str, flows: FlowsFactory, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-artifacts"
    kitaru.create_stack(
        "shared", kind="ray", address=ray_address, artifact_store=str(shared), activate=False
    )
    module = flows(
        """
        from kitaru import flow

        @flow
        def agent():
            return 1
        """
    )
    with pytest.raises(KitaruStackNotRemoteExecutableUsageError, match="KITARU_ARTIFACTS_ROOT"):
        module.agent.run(stack="shared")
    kitaru.configure(artifacts_root=str(shared))
    assert module.agent.run(stack="shared").wait(timeout=240) == 1


def test_an_address_nothing_listens_on_fails_at_run(flows: FlowsFactory) -> None:
    kitaru.create_stack("nowhere", kind="ray", address="127.0.0.1:9", activate=False)
    module = flows(
        """
        from kitaru import flow

        @flow
        def agent():
            return 1
        """
    )
    with pytest.raises(KitaruStackNotRemoteExecutableUsageError, match="Nothing answers"):
        module.agent.run(stack="nowhere")
    assert KitaruClient().executions.list() == []


def test_a_wait_lets_the_worker_go_and_input_resumes_on_the_cluster(
    ray_stack: str, flows: FlowsFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    module = flows(
        f"""
        import os
        from pathlib import Path
        import kitaru
        from kitaru import checkpoint, flow

        MARKS = Path({str(marks)!r})

        @checkpoint
        def before():
            with open(MARKS / "before", "a") as f:
                f.write("ran\\n")
            return os.getpid()

        @checkpoint
        def after(first_pid, answer):
            return {{"first": first_pid, "second": os.getpid(), "answer": answer}}

        @flow
        def agent():
            first = before()
            answer = kitaru.wait(schema=int, name="approve", timeout=1)
            return after(first, answer)
        """
    )
    handle = module.agent.run(stack=ray_stack)
    client = KitaruClient()
    _until(lambda: handle.status is ExecutionStatus.WAITING, "the execution to wait")
    import ray

    from kitaru._stacks.ray import NAMESPACE, actor_name

    def actor_gone() -> bool:
        try:
            ray.get_actor(actor_name(handle.exec_id), namespace=NAMESPACE)
        except ValueError:
            return True
        return False

    _until(actor_gone, "the worker to be let go after the wait's timeout")
    client.executions.input(handle.exec_id, value=7)
    result = handle.wait(timeout=240)
    assert result["answer"] == 7
    assert os.getpid() not in (result["first"], result["second"])  # both ran on the cluster
    assert (marks / "before").read_text().split() == ["ran"]  # not run again on resume


def test_a_replay_of_a_ray_execution_runs_on_the_cluster(
    ray_stack: str, flows: FlowsFactory
) -> None:
    module = flows(
        """
        import os
        from kitaru import checkpoint, flow

        @checkpoint
        def first():
            return os.getpid()

        @checkpoint
        def second(pid):
            return [pid, os.getpid()]

        @flow
        def agent():
            return second(first())
        """
    )
    original = module.agent.run(stack=ray_stack)
    first_pid, _ = original.wait(timeout=240)
    submission = module.agent.replay(original.exec_id, at="second", wait=True)
    (row,) = submission.results
    replayed = kitaru.FlowHandle(row.replay_exec_id).get()
    assert replayed[0] == first_pid  # reused from the original run
    assert replayed[1] not in (first_pid, os.getpid())  # ran again, on the cluster
    execution = KitaruClient().executions.get(row.replay_exec_id)
    assert execution.stack_name == ray_stack
    assert execution.config["ray"]["address"]


CLIENT_SCRIPT = """
import json
import os
import kitaru
import client_flows

kitaru.create_stack("via-client", kind="ray", address={address!r}, activate=False)
handle = client_flows.agent.run(5, stack="via-client")
print("EXEC", handle.exec_id, flush=True)
print("PID", os.getpid(), flush=True)
print("RESULT", json.dumps(handle.wait(timeout=240)), flush=True)
"""


def test_a_ray_client_address_runs_the_execution_on_the_cluster(
    ray_client_address: str, tmp_path: Path
) -> None:
    """ray://HOST:PORT: the project's code travels with the Ray Client connection."""
    project = tmp_path / "client-project"
    project.mkdir()
    (project / "helper.py").write_text("def triple(x):\n    return 3 * x\n")
    (project / "client_flows.py").write_text(
        textwrap.dedent(
            """
            import os
            from kitaru import checkpoint, flow
            from helper import triple  # only in the project: must reach the workers

            @checkpoint
            def work(x):
                print(f"working on {x}")
                return [triple(x), os.getpid()]

            @flow
            def agent(x):
                return work(x)
            """
        )
    )
    (project / "main.py").write_text(CLIENT_SCRIPT.format(address=ray_client_address))
    result = subprocess.run(
        [sys.executable, "main.py"],
        cwd=project,
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    value, worker_pid = json.loads(lines["RESULT"])
    assert value == 15
    assert worker_pid != int(lines["PID"])  # ran on the cluster, not in the script
    execution = KitaruClient().executions.get(lines["EXEC"])
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.config["ray"]["address"] == ray_client_address
    messages = [entry.message for entry in KitaruClient().executions.logs(lines["EXEC"])]
    assert "working on 5" in messages


def test_a_client_server_that_fails_to_start_is_tried_again(
    ray_client_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's client proxy sometimes loses the per-connection server it spawns (under
    load); the connection is tried again instead of failing the run. Other failures are
    not retried."""
    import ray

    from kitaru._stacks import ray as ray_stack

    real_init, calls = ray.init, []

    def flaky_init(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["address"])
        if len(calls) == 1:  # the message Ray's proxier sends back in this case
            raise ConnectionAbortedError(
                "Initialization failure from server:\nTraceback (most recent call last):\n"
                "RuntimeError: Starting Ray client server failed. See "
                "ray_client_server_23000.err for detailed logs."
            )
        return real_init(*args, **kwargs)

    monkeypatch.setattr(ray, "init", flaky_init)
    stack = {"name": "via-client", "config": {"address": ray_client_address}}
    try:
        assert ray_stack.connect(stack) is True  # connected: the cluster is this machine
        # The failure was tried again. (Under load the real proxy can lose its server
        # too, the very case this retries, and then it is tried once more.)
        assert len(calls) >= 2
        assert set(calls) == {ray_client_address}
        assert ray.is_initialized()
    finally:
        ray.shutdown()

    def broken_init(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["address"])
        raise ConnectionError("ray client connection timeout")

    monkeypatch.setattr(ray, "init", broken_init)
    calls.clear()
    with pytest.raises(KitaruStackNotRemoteExecutableUsageError, match="connection timeout"):
        ray_stack.connect(stack)
    assert calls == [ray_client_address]


@pytest.mark.postgres
def test_runs_on_a_postgresql_store(
    ray_stack: str, flows: FlowsFactory, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kitaru._backend import forget_backends

    monkeypatch.setenv("KITARU_STORE_URL", postgres_url)
    forget_backends()
    module = flows(
        """
        import os
        from kitaru import checkpoint, flow

        @checkpoint
        def where():
            return os.environ["KITARU_STORE_URL"].split("?")[0]

        @flow
        def agent():
            return where()
        """
    )
    handle = module.agent.run(stack=ray_stack)
    assert handle.wait(timeout=240) == postgres_url.split("?")[0]
    assert KitaruClient().executions.get(handle.exec_id).status is ExecutionStatus.COMPLETED


def test_kitaru_worker_continues_an_execution_whose_actor_is_gone(
    ray_stack: str, flows: FlowsFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    module = flows(
        f"""
        import os, time
        from pathlib import Path
        from kitaru import checkpoint, flow

        MARKS = Path({str(marks)!r})

        @checkpoint
        def first():
            with open(MARKS / "first", "a") as f:
                f.write("ran\\n")
            return 1

        @checkpoint
        def second(x):
            if not (MARKS / "stopped").exists():
                (MARKS / "started").write_text("")
                time.sleep(120)  # the actor is removed here, for good
            return x + 1

        @flow
        def agent():
            return second(first())
        """
    )
    handle = module.agent.run(stack=ray_stack)
    _until(lambda: (marks / "started").exists(), "the second checkpoint to start")
    import ray

    from kitaru._stacks.ray import NAMESPACE, actor_name
    from kitaru.worker import run_worker

    (marks / "stopped").write_text("")
    # Ray will not restart it: only Kitaru's worker can continue the execution now.
    ray.kill(ray.get_actor(actor_name(handle.exec_id), namespace=NAMESPACE), no_restart=True)
    _until(lambda: run_worker(once=True) == 1, "the worker to resume the execution")
    assert handle.wait(timeout=240) == 2
    assert (marks / "first").read_text().split() == ["ran"]
    execution = KitaruClient().executions.get(handle.exec_id)
    # The first run; the worker's claim and the new actor's take-over count one each.
    assert execution.run_count == 3


def test_a_project_too_large_to_ship_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "big"
    project.mkdir()
    with open(project / "data.bin", "wb") as f:
        f.truncate(101 * 1024 * 1024)  # sparse: no real disk use
    (project / "big_flows.py").write_text(
        "from kitaru import flow\n\n@flow\ndef agent():\n    return 1\n"
    )
    kitaru.create_stack("far", kind="ray", address="127.0.0.1:9", activate=False)
    sys.path.insert(0, str(project))
    try:
        import big_flows  # type: ignore[import-not-found]

        with pytest.raises(KitaruUsageError, match="too much to ship"):
            big_flows.agent.run(stack="far")
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("big_flows", None)
    assert KitaruClient().executions.list() == []


def test_a_killed_isolated_task_fails_that_attempt_and_the_retry_runs_it(
    ray_stack: str, flows: FlowsFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    module = flows(
        f"""
        import os, time
        from pathlib import Path
        from kitaru import checkpoint, flow

        MARKS = Path({str(marks)!r})

        @checkpoint(runtime="isolated", retries=1)
        def fragile(x):
            with open(MARKS / "attempts", "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            if not (MARKS / "killed").exists():
                (MARKS / "pid").write_text(str(os.getpid()))
                time.sleep(120)
            return x * 10

        @flow
        def agent():
            return fragile(4)
        """
    )
    handle = module.agent.run(stack=ray_stack)
    _until(lambda: (marks / "pid").exists(), "the isolated task to start")
    (marks / "killed").write_text("")
    os.kill(int((marks / "pid").read_text()), signal.SIGKILL)
    assert handle.wait(timeout=240) == 40
    assert len((marks / "attempts").read_text().split()) == 2
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert len(call.attempts) == 2
    assert "Ray task" in str(call.attempts[0].failure)


def test_a_lost_node_restarts_the_execution_on_another_one(
    ray_cluster: Any, flows: FlowsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LEASE_SECONDS", "3")
    # The execution may only run on nodes with a 'pinned' resource: first this one...
    doomed = ray_cluster.add_node(num_cpus=2, resources={"pinned": 1}, node_ip_address="127.0.0.1")
    spare = None
    kitaru.create_stack(
        "pinned",
        kind="ray",
        address=ray_cluster.address,
        resources={"pinned": 1},
        activate=False,
    )
    marks = tmp_path / "marks"
    marks.mkdir()
    module = flows(
        f"""
        import time
        from pathlib import Path
        import ray
        from kitaru import checkpoint, flow

        MARKS = Path({str(marks)!r})

        def node():
            return ray.get_runtime_context().get_node_id()

        @checkpoint
        def first():
            with open(MARKS / "first", "a") as f:
                f.write("ran\\n")
            return node()

        @checkpoint
        def second(before):
            if not (MARKS / "lost").exists():
                (MARKS / "started").write_text("")
                time.sleep(120)  # the node goes away here
            return [before, node()]

        @flow
        def agent():
            return second(first())
        """
    )
    try:
        handle = module.agent.run(stack="pinned")
        _until(lambda: (marks / "started").exists(), "the second checkpoint to start")
        # ...then, once it runs there, another node to go on and the first one gone.
        spare = ray_cluster.add_node(
            num_cpus=2, resources={"pinned": 1}, node_ip_address="127.0.0.1"
        )
        (marks / "lost").write_text("")
        ray_cluster.remove_node(doomed, allow_graceful=False)
        doomed = None
        before, after = handle.wait(timeout=240)
        assert before != after  # finished on the other node
        assert (marks / "first").read_text().split() == ["ran"]
    finally:
        for node in (doomed, spare):
            if node is not None:
                ray_cluster.remove_node(node, allow_graceful=False)


def test_a_runtime_env_ray_cannot_set_up_fails_the_execution_with_rays_reason(
    ray_address: str, flows: FlowsFactory
) -> None:
    """It used to stay 'running', with no reason, until its dispatch lease ran out.

    A conda env that does not exist fails Ray's set-up in seconds (a pip requirement
    that does not exist fails it too, after ~1-4 minutes of virtualenv tries)."""
    kitaru.create_stack(
        "no-such-env",
        kind="ray",
        address=ray_address,
        runtime_env={"conda": "kitaru-no-such-conda-env"},
        activate=False,
    )
    module = flows(
        """
        from kitaru import flow

        @flow
        def agent():
            return 1
        """
    )
    handle = module.agent.run(stack="no-such-env")
    with pytest.raises(KitaruExecutionError) as caught:
        handle.wait(timeout=120)
    assert caught.value.status is ExecutionStatus.FAILED
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.failure is not None
    message = execution.failure.message
    assert "could not set up the runtime env" in message
    assert "conda" in message  # Ray's own reason
    assert f"kitaru executions retry {handle.exec_id}" in message
    assert execution.checkpoints == []
