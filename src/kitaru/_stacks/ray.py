"""The ``ray`` stack: executions run on a Ray cluster, owned by Kitaru's store.

``.run()`` on a ray stack records the execution, then starts one detached Ray
actor for it (named ``kitaru-exec-<id>`` in namespace ``kitaru``) and returns.
The actor claims the execution in the store, taking its lease and fence exactly
as a local runner does, and runs the flow body with the same driver code as
``kitaru worker``. Ray only launches: a completed checkpoint is the one the
store recorded under the runner's fence, never Ray's word.

Detached, so the submitting process may exit at once; restartable
(``max_restarts``), so a worker killed mid-checkpoint is started again and
resumes from the recorded checkpoints. Isolated checkpoints run as Ray tasks
(see ``_ray_isolated``). The submitting side lives here; the worker side in
``_ray_actor``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from kitaru._stacks._ray_env import RuntimeEnv, build_runtime_env
from kitaru.client._remote_store import runner_env
from kitaru.errors import (
    KitaruStackIntegrationDependencyError,
    KitaruStackNotRemoteExecutableUsageError,
)

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru._store import ExecutionRecord

logger = logging.getLogger("kitaru")

NAMESPACE: Final = "kitaru"
#: How often Ray restarts an execution's actor whose process died.
MAX_RESTARTS: Final = 3
#: A dispatched execution's lease lasts this long before its actor claims it
#: (covers the runtime env setup: pip installs, code upload). Seconds.
ENV_DISPATCH_SECONDS: Final = "KITARU_RAY_DISPATCH_SECONDS"
#: Forwarded to the execution's process with its arguments (never as env_vars).
_FORWARDED_PREFIX: Final = "KITARU_"
_NOT_FORWARDED: Final = frozenset({"KITARU_STORE_URL", "KITARU_ARTIFACTS_ROOT"})

_connect_lock = threading.Lock()
_connected: str | None = None
_connected_job_env: dict[str, Any] = {}
_local_cluster: dict[str, bool] = {}


def actor_name(exec_id: str) -> str:
    return f"kitaru-exec-{exec_id}"


def dispatch_seconds() -> float:
    return float(os.environ.get(ENV_DISPATCH_SECONDS, "300"))


@dataclasses.dataclass
class RayLaunch:
    """A run prepared for a ray stack: checked, connected, its runtime env built."""

    stack: dict[str, Any]
    runtime_env: RuntimeEnv
    backend: Backend

    def record_config(self) -> dict[str, Any]:
        return {
            "ray": {
                "address": self.stack["config"]["address"],
                "runtime_env": self.runtime_env.recorded(),
            }
        }

    def dispatch_record(self, record: ExecutionRecord) -> ExecutionRecord:
        """The new record as dispatched: nobody runs it until the actor claims it.

        Its frozen config also records the cluster and the runtime env (redacted).
        """
        return dataclasses.replace(
            record,
            config={**record.config, **self.record_config()},
            run_count=0,
            lease_owner=f"ray-dispatch/{uuid.uuid4().hex}",
            lease_expires_at=time.time() + dispatch_seconds(),
        )

    def launch(self, record: ExecutionRecord) -> None:
        """Start the execution's actor; the record must be stored (and dispatchable)."""

        config = self.stack["config"]
        payload = {
            "exec_id": record.id,
            "fence": record.fence,
            "store_url": self.backend.store.url,
            "artifacts_root": self.backend.artifacts_root,
            "env": {
                **_forwarded_env(),
                **self.runtime_env.secret_env,
                **runner_env(self.backend.store),  # a Kitaru server's key (not env_vars)
            },
            "code_root": self.runtime_env.code_root,
            "flow_ref": record.flow_ref,
            "num_cpus": config.get("num_cpus", 1),
            "num_gpus": config.get("num_gpus", 0),
            "resources": dict(config.get("resources") or {}),
        }
        actor_cls = _actor_class()
        try:
            runtime_env = upload_code(self.runtime_env.ray)
            actor = actor_cls.options(
                name=actor_name(record.id),
                namespace=NAMESPACE,
                lifetime="detached",
                max_restarts=MAX_RESTARTS,
                num_cpus=payload["num_cpus"],
                num_gpus=payload["num_gpus"],
                resources=payload["resources"],
                runtime_env=runtime_env,
            ).remote(payload)
        except Exception as exc:
            raise KitaruStackNotRemoteExecutableUsageError(
                f"Could not start execution {record.id} on ray stack {self.stack['name']!r} "
                f"({type(exc).__name__}: {exc})."
            ) from exc
        from kitaru._stacks._ray_watch import watch_start

        watch_start(actor, record, self.backend.store, self.stack["name"], dispatch_seconds())


_actor_cls: Any = None


def _actor_class() -> Any:
    """The Ray actor class, made once per process."""
    global _actor_cls
    if _actor_cls is None:
        import ray

        from kitaru._stacks._ray_actor import ExecutionActor

        _actor_cls = ray.remote(ExecutionActor)
    return _actor_cls


def upload_code(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """The runtime env with local working_dir/py_modules uploaded to the cluster (as URIs).

    Ray uploads local directories only for a whole job (``ray.init``); an
    execution's actor needs its own, so Kitaru packs them the way ``ray.init`` does
    (content-addressed: unchanged code is uploaded once).
    """
    import inspect

    import ray

    if ray.util.client.ray.is_connected():  # type: ignore[no-untyped-call]
        # Ray Client: local code travelled with the job (connect()); the actor inherits it.
        return {k: v for k, v in runtime_env.items() if k not in _CLIENT_JOB_KEYS}
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    env = dict(runtime_env)
    node = ray._private.worker.global_worker.node
    scratch_dir = None if node is None else node.get_runtime_env_dir_path()
    for upload in (upload_py_modules_if_needed, upload_working_dir_if_needed):
        kwargs: dict[str, Any] = {"scratch_dir": scratch_dir, "logger": logger}
        if "include_gitignore" in inspect.signature(upload).parameters:
            kwargs["include_gitignore"] = True
        env = upload(env, **kwargs)
    env.pop("excludes", None)
    return env


def stack_record_for(stack_name: str) -> dict[str, Any] | None:
    """The stored record of ``stack_name`` when it is a remote (ray) stack, else None."""
    from kitaru._stacks.registry import LOCAL_STACK_NAME, get_stack_record

    if stack_name == LOCAL_STACK_NAME:
        return None
    record = get_stack_record(stack_name)
    return record if record.get("kind") == "ray" else None


def prepare(
    stack: dict[str, Any],
    *,
    backend: Backend,
    image: dict[str, Any] | None,
    flow_ref: dict[str, Any],
) -> RayLaunch:
    """Check that ``stack`` can run this execution and connect to it; nothing is written.

    ``image`` holds the real environment values (not the redacted record).
    """
    name = str(stack["name"])
    runtime_env = build_runtime_env(
        stack_name=name,
        stack_env=dict(stack["config"].get("runtime_env") or {}),
        image=image,
        flow_ref=flow_ref,
    )
    local = connect(stack, job_env=client_job_env(runtime_env.ray))
    check_reachable(stack, backend, local_cluster=local)
    if "image_uri" in runtime_env.ray and local and not _has_podman():
        raise KitaruStackNotRemoteExecutableUsageError(
            f"image base_image={runtime_env.ray['image_uri']!r} on ray stack {name!r} runs "
            "the execution in that container through Ray's image_uri, which needs podman on "
            "every node; this machine (a node of the cluster) has none. Install podman, or "
            "leave base_image out and use requirements= (installed with pip)."
        )
    return RayLaunch(stack=stack, runtime_env=runtime_env, backend=backend)


#: Runtime-env fields Ray Client accepts with local paths only for a whole job.
_CLIENT_JOB_KEYS: Final = ("working_dir", "py_modules", "excludes")


def client_job_env(runtime_env: Mapping[str, Any]) -> dict[str, Any]:
    """The code-shipping part of an execution's runtime env (what ``ray.init`` uploads)."""
    return {k: runtime_env[k] for k in _CLIENT_JOB_KEYS if k in runtime_env}


def connect(stack: Mapping[str, Any], *, job_env: Mapping[str, Any] | None = None) -> bool:
    """Connect this process to the stack's cluster; True if every node is this machine.

    Through Ray Client (``ray://``) local code can only be uploaded for the whole
    connection, so ``job_env`` (working_dir, py_modules) goes to ``ray.init`` and a
    different one reconnects; the detached actors started before keep theirs.
    """
    global _connected, _connected_job_env
    try:
        import ray
    except ImportError:
        raise KitaruStackIntegrationDependencyError(
            f"Stack {stack['name']!r} runs on Ray, which is not installed here. Install "
            "Kitaru's ray extra from this repository: `pip install -e '.[ray]'` (or a "
            "wheel built from it, with [ray])."
        ) from None
    address = str(stack["config"]["address"])
    client = address.startswith("ray://")
    wanted_env = dict(job_env or {}) if client else {}
    with _connect_lock:
        if (
            _connected != address
            or not ray.is_initialized()
            or (client and wanted_env != _connected_job_env)
        ):
            _check_listening(str(stack["name"]), address)
            if ray.is_initialized():
                ray.shutdown()
            options: dict[str, Any] = {"runtime_env": wanted_env} if wanted_env else {}
            if not client:
                options.update(configure_logging=False, logging_level=logging.WARNING)
            try:
                _init(ray, address, options)
            except Exception as exc:
                raise KitaruStackNotRemoteExecutableUsageError(
                    f"Cannot connect to the Ray cluster of stack {stack['name']!r} at "
                    f"{address!r} ({type(exc).__name__}: {exc}). Check that the cluster is "
                    "up and the address is right (`ray status` on a node), or recreate the "
                    "stack with the right --address."
                ) from None
            _connected = address
            _connected_job_env = wanted_env
            _local_cluster.pop(address, None)
        if address not in _local_cluster:
            _local_cluster[address] = _all_nodes_local(ray.nodes())  # type: ignore[no-untyped-call]
        return _local_cluster[address]


#: What a Ray Client server answers when the per-connection server it spawned died
#: while starting (seen under load): a fault of that attempt, not of the cluster.
_CLIENT_SERVER_STARTUP_FAILED: Final = (
    "Starting Ray client server failed",
    "Proxy failed to Connect to backend",
)
#: Seen failing twice in a row on a loaded 2-core machine (each try takes the proxier
#: ~40 s to give up): worth a few tries before a run fails.
_INIT_ATTEMPTS: Final = 5


def _init(ray: Any, address: str, options: dict[str, Any]) -> None:
    """``ray.init``, tried again after a Ray Client server's failed start."""
    for attempt in range(1, _INIT_ATTEMPTS + 1):
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, **options)
            return
        except Exception as exc:
            transient = any(text in str(exc) for text in _CLIENT_SERVER_STARTUP_FAILED)
            if not transient or attempt == _INIT_ATTEMPTS:
                raise
            logger.info("Ray Client server failed to start (attempt %d); retrying", attempt)
            with contextlib.suppress(Exception):
                ray.shutdown()
            time.sleep(min(2.0 * attempt, 5.0))  # let the loaded proxier settle


def _check_listening(name: str, address: str) -> None:
    """Fail fast on an address nothing listens on (ray.init would retry for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise KitaruStackNotRemoteExecutableUsageError(
            f"Nothing answers at {address!r}, the address of ray stack {name!r} ({exc}). "
            "Start the cluster (or check the address: `ray status` on its head node), or "
            f"recreate the stack: `kitaru stack delete {name}` then `kitaru stack create "
            f"{name} --type ray --address HOST:PORT`."
        ) from None


def _all_nodes_local(nodes: list[dict[str, Any]]) -> bool:
    addresses = {n.get("NodeManagerAddress") for n in nodes if n.get("Alive")}
    return bool(addresses) and all(_is_this_machine(a) for a in addresses if a)


def _is_this_machine(host: str) -> bool:
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        return False
    return host in _local_ips()


def _local_ips() -> set[str]:
    ips: set[str] = set()
    with contextlib.suppress(OSError):
        ips.update(socket.gethostbyname_ex(socket.gethostname())[2])
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            ips.update(a.address for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6))
    except Exception:
        pass
    return ips


def check_reachable(stack: Mapping[str, Any], backend: Backend, *, local_cluster: bool) -> None:
    """``KitaruStackNotRemoteExecutableUsageError`` when the workers cannot reach the store
    or the artifact root this process uses."""
    name = stack["name"]
    where = "the Ray cluster's nodes are other machines" if not local_cluster else ""
    url = backend.store.url
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme == "sqlite":
        path = url.split("///", 1)[1] if "///" in url else ""
        if not path or path.startswith(":memory:"):
            raise _unreachable(name, f"the store is an in-memory SQLite database ({url})", "store")
        if not local_cluster:
            raise _unreachable(
                name, f"the store is a SQLite file on this machine and {where}", "store"
            )
    elif not local_cluster and _loopback_host(url):
        raise _unreachable(
            name, f"the store's host is this machine's loopback address and {where}", "store"
        )
    root = backend.artifacts_root
    wanted = stack["config"].get("artifact_store")
    if wanted and wanted.rstrip("/") != root.rstrip("/"):
        raise KitaruStackNotRemoteExecutableUsageError(
            f"Ray stack {name!r} keeps artifacts at {wanted!r}, but this process uses the "
            f"artifact root {root!r}. Point Kitaru at the stack's: KITARU_ARTIFACTS_ROOT="
            f"{wanted} (or kitaru.configure(artifacts_root={wanted!r}))."
        )
    root_scheme = urlsplit(root).scheme if "://" in root else "file"
    if root_scheme == "memory":
        raise _unreachable(
            name, f"the artifact root {root!r} lives in this process's memory", "artifacts"
        )
    if root_scheme in ("file", "local") and not local_cluster:
        raise _unreachable(
            name, f"the artifact root {root!r} is a local directory and {where}", "artifacts"
        )


def _loopback_host(url: str) -> bool:
    host = urlsplit(url).hostname
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unreachable(stack: str, why: str, what: str) -> KitaruStackNotRemoteExecutableUsageError:
    fix = (
        "Use a PostgreSQL store every node reaches (KITARU_STORE_URL=postgresql+psycopg://"
        "USER@HOST/DB with a host name the nodes resolve)"
        if what == "store"
        else "Use an artifact root every node reaches (KITARU_ARTIFACTS_ROOT=s3://bucket/"
        "kitaru, gs://..., or a path on a shared filesystem mounted on every node)"
    )
    return KitaruStackNotRemoteExecutableUsageError(
        f"Ray stack {stack!r} cannot run this execution: {why}, so its workers could not "
        f"reach it. {fix}, or run on the local stack (stack='local')."
    )


def _has_podman() -> bool:
    import shutil

    return shutil.which("podman") is not None


def _forwarded_env() -> dict[str, str]:
    """This process's Kitaru settings (not secret-looking) for the execution's process."""
    from kitaru._stacks.ray_config import looks_secret

    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith(_FORWARDED_PREFIX) and k not in _NOT_FORWARDED and not looks_secret(k)
    }


def image_for_dispatch(
    settings_image: Any, recorded: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The image dict to build a runtime env from: real values when this process has them.

    ``settings_image`` is the merged ImageSettings of a fresh run (real values);
    a resume only has the record, whose secret-looking values were redacted:
    those come from this process's environment of the same name, or are left out.
    """
    if settings_image is not None:
        return dict(settings_image.to_dict())
    if not recorded:
        return None
    image = dict(recorded)
    env = dict(image.get("environment") or {})
    from kitaru.config import REDACTED

    for key, value in list(env.items()):
        if value == REDACTED:
            if key in os.environ:
                env[key] = os.environ[key]
            else:
                del env[key]
    image["environment"] = env
    return image


def prepare_again(backend: Backend, record: ExecutionRecord) -> RayLaunch | None:
    """For resume, retry or input: prepare to run a ray stack's execution there again.

    None when the execution's stack is not a ray stack (it runs in this process).
    Called before the claim, so a stack that cannot run it changes nothing.
    """
    stack = stack_record_for(record.stack)
    if stack is None:
        return None
    return prepare(
        stack,
        backend=backend,
        image=image_for_dispatch(None, record.config.get("image")),
        flow_ref=record.flow_ref,
    )


def hand_over(launch: RayLaunch, claimed: ExecutionRecord) -> None:
    """Give the execution this process just claimed to a new actor on the cluster.

    The actor takes it over at once (same fence). Should the launch fail, the
    claim lapses with its lease and any resume (``kitaru worker``) continues it.
    """
    _kill_previous(claimed.id)
    launch.launch(claimed)


def _kill_previous(exec_id: str) -> None:
    """An earlier actor of the execution (it ended at a wait, or died) frees its name."""
    import ray

    try:
        ray.kill(ray.get_actor(actor_name(exec_id), namespace=NAMESPACE), no_restart=True)
    except ValueError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            ray.get_actor(actor_name(exec_id), namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.1)


__all__ = [
    "NAMESPACE",
    "RayLaunch",
    "actor_name",
    "check_reachable",
    "connect",
    "hand_over",
    "image_for_dispatch",
    "prepare",
    "prepare_again",
    "stack_record_for",
]
