"""One measurement of one system, run by ``compare.py`` in that system's own venv.

Usage: ``python _worker.py '<json spec>'``. It needs only the standard library and the
system under test (plus psycopg for PostgreSQL), and prints one line
``PEERS-RESULT {json}`` on stdout. Everything else (logs, warnings) may go anywhere.

A workflow measurement times ``run(n)`` for n in ``spec["sizes"]``, interleaved, after a
warm-up that also grows an SQLite WAL to its full size. A raw measurement times single
durable commits. The caller turns the times into per-step costs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

RESULT_MARK = "PEERS-RESULT "
WAL_AUTOCHECKPOINT_FRAMES = 1000  # SQLite's default wal_autocheckpoint
WARM_WAL_MAX_RUNS = 200

Run = Callable[[int], None]


# -- helpers -------------------------------------------------------------------------


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql://...`` (what psycopg and DBOS take)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


def with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def pg_execute(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def sqlite_info(db: Path) -> dict[str, Any]:
    """Journal mode and page size of a store, read from the file afterwards."""
    conn = sqlite3.connect(db)
    try:
        return {
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
        }
    finally:
        conn.close()


def full_wal_bytes(page_size: int) -> int:
    return WAL_AUTOCHECKPOINT_FRAMES * (page_size + 24)


def wal_size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def timed(run: Run, n: int) -> float:
    t0 = time.perf_counter()
    run(n)
    return time.perf_counter() - t0


def measure_workflows(run: Run, spec: dict[str, Any], db: Path | None) -> dict[str, Any]:
    """Warm up (to a full-size WAL for SQLite), then time ``run(n)``, sizes interleaved."""
    sizes: list[int] = spec["sizes"]
    reps: dict[str, int] = spec["reps"]
    t_warm = time.perf_counter()
    for _ in range(3):
        run(0)
    run(max(sizes))
    warm_runs = 0
    info: dict[str, Any] = {}
    if db is not None:
        info = sqlite_info(db)
        if info["journal_mode"] == "wal":
            target = full_wal_bytes(info["page_size"])
            while wal_size(db) < target and warm_runs < WARM_WAL_MAX_RUNS:
                run(100)
                warm_runs += 1
            info["wal_bytes_after_warm_up"] = wal_size(db)
            info["wal_full_size"] = wal_size(db) >= target
    run(1)
    warm_s = time.perf_counter() - t_warm
    times: dict[str, list[float]] = {str(n): [] for n in sizes}
    for rep in range(max(reps[str(n)] for n in sizes)):
        for n in sizes:
            if rep < reps[str(n)]:
                times[str(n)].append(timed(run, n))
    if db is not None and info.get("journal_mode") == "wal":
        info["wal_bytes_at_end"] = wal_size(db)
    return {"times": times, "warm_up_s": warm_s, "extra_warm_runs": warm_runs, "store": info}


# -- raw baselines ---------------------------------------------------------------------


def raw_sqlite(spec: dict[str, Any]) -> dict[str, Any]:
    """``BEGIN IMMEDIATE; INSERT 32 bytes; COMMIT`` on WAL + ``synchronous=FULL``."""
    db = Path(spec["workdir"]) / "raw.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    payload = "x" * 32
    perf = time.perf_counter

    def commit() -> float:
        t0 = perf()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", (payload,))
        conn.execute("COMMIT")
        return perf() - t0

    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    warm = 0
    while wal_size(db) < full_wal_bytes(page_size) and warm < 5000:
        commit()
        warm += 1
    for _ in range(spec["raw_warm_commits"]):
        commit()
    samples = [commit() for _ in range(spec["raw_commits"])]
    info = {
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
        "wal_bytes": wal_size(db),
        "wal_full_size": wal_size(db) >= full_wal_bytes(page_size),
    }
    conn.close()
    return {"commits": samples, "store": info}


def raw_postgres(spec: dict[str, Any]) -> dict[str, Any]:
    """One ``INSERT`` of 32 bytes on an autocommit connection: one durable round trip."""
    import psycopg

    schema = spec["schema"]
    pg_execute(spec["postgres_url"], f'CREATE SCHEMA "{schema}"')
    try:
        with psycopg.connect(libpq_url(spec["postgres_url"]), autocommit=True) as conn:
            conn.execute(f'CREATE TABLE "{schema}".t (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)')
            settings = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
            }
            cursor = conn.cursor()
            insert = f'INSERT INTO "{schema}".t (v) VALUES (%s)'
            payload = ("x" * 32,)
            perf = time.perf_counter
            samples = []
            for i in range(spec["raw_warm_commits"] + spec["raw_commits"]):
                t0 = perf()
                cursor.execute(insert, payload)
                if i >= spec["raw_warm_commits"]:
                    samples.append(perf() - t0)
        return {"commits": samples, "store": settings}
    finally:
        pg_execute(spec["postgres_url"], f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- Kitaru ------------------------------------------------------------------------------


def kitaru_system(spec: dict[str, Any]) -> dict[str, Any]:
    """``@flow`` calling a no-op ``@checkpoint`` n times; ``flow.run(n).wait()``.

    ``cache`` follows the spec: ``True`` is Kitaru's default; every run passes inputs
    never seen before, so each call is a cache miss that runs live (no cache hits).
    """
    workdir = Path(spec["workdir"])
    os.environ["KITARU_CONFIG_PATH"] = str(workdir / "home")
    os.chdir(workdir)  # no caller's [tool.kitaru] applies
    import kitaru

    schema = spec.get("schema")
    db: Path | None = None
    if schema:
        pg_execute(spec["postgres_url"], f'CREATE SCHEMA "{schema}"')
        base = "postgresql+psycopg://" + libpq_url(spec["postgres_url"]).partition("://")[2]
        store_url = with_search_path(base, schema)
    else:
        db = workdir / "kitaru.db"
        store_url = f"sqlite:///{db}"
    kitaru.configure(store_url=store_url, artifacts_root=str(workdir / "artifacts"))
    try:

        @kitaru.checkpoint
        def noop(i: int) -> int:
            return i

        def body(n: int, base: int) -> int:
            for i in range(n):
                noop(base + i)
            return n

        workflow = kitaru.flow(cache=spec["cache"])(body)
        counter = iter(range(1, 1 << 40))

        def run(n: int) -> None:
            workflow.run(n, next(counter) * 10_000_000).wait()

        result = measure_workflows(run, spec, db)
        result["version"] = kitaru.__version__
        return result
    finally:
        if schema:
            pg_execute(spec["postgres_url"], f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- DBOS ------------------------------------------------------------------------------


def dbos_system(spec: dict[str, Any]) -> dict[str, Any]:
    """``@DBOS.workflow()`` calling a no-op ``@DBOS.step()`` n times, called directly.

    Each call is a new workflow (DBOS gives it a fresh id). SQLite: a fresh file with
    DBOS's own settings (a rollback journal), or switched to WAL first when
    ``spec["wal"]``; PostgreSQL: a fresh ``dbos_system_schema`` in the given database.
    """
    from importlib.metadata import version

    from dbos import DBOS, DBOSConfig

    workdir = Path(spec["workdir"])
    os.chdir(workdir)

    @DBOS.step()
    def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    def body(n: int) -> int:
        for i in range(n):
            noop(i)
        return n

    config: DBOSConfig = {
        "name": "peers-bench",
        "run_admin_server": False,
        "log_level": "WARNING",
    }
    schema = spec.get("schema")
    db: Path | None = None
    if schema:
        config["system_database_url"] = libpq_url(spec["postgres_url"])
        config["dbos_system_schema"] = schema
    else:
        db = workdir / "dbos.sqlite"
        if spec.get("wal"):  # WAL is kept in the file; DBOS itself sets no journal_mode
            sqlite3.connect(db).execute("PRAGMA journal_mode=WAL").fetchone()
        config["system_database_url"] = f"sqlite:///{db}"
    DBOS(config=config)
    try:
        DBOS.launch()
        result = measure_workflows(body, spec, db)
        result["version"] = version("dbos")
        return result
    finally:
        DBOS.destroy()
        if schema:
            pg_execute(spec["postgres_url"], f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- LangGraph ---------------------------------------------------------------------------


class LgState(TypedDict):
    i: int
    n: int


_LG_END = "__end__"  # replaced by langgraph.graph.END when the graph is built


def lg_step(state: LgState) -> dict[str, int]:
    """The no-op node: one step."""
    return {"i": state["i"] + 1}


def lg_route(state: LgState) -> str:
    return "step" if state["i"] < state["n"] else _LG_END


def langgraph_system(spec: dict[str, Any]) -> dict[str, Any]:
    """A graph whose one no-op node runs n times (one superstep, one checkpoint each).

    Compiled with ``SqliteSaver`` on a fresh file; each run is ``graph.invoke`` on a new
    ``thread_id`` with ``durability="sync"`` (each checkpoint written before the next
    step starts; LangGraph's default is ``"async"``).
    """
    from importlib.metadata import version

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    global _LG_END
    _LG_END = END
    builder = StateGraph(LgState)
    builder.add_node("step", lg_step)
    builder.add_conditional_edges(START, lg_route, ["step", END])
    builder.add_conditional_edges("step", lg_route, ["step", END])

    db = Path(spec["workdir"]) / "langgraph.sqlite"
    conn = sqlite3.connect(db, check_same_thread=False)
    saver = SqliteSaver(conn)
    graph = builder.compile(checkpointer=saver)

    def run(n: int) -> None:
        config: Any = {
            "configurable": {"thread_id": uuid.uuid4().hex},
            "recursion_limit": n + 10,
        }
        out = graph.invoke({"i": 0, "n": n}, config, durability="sync")
        assert out["i"] == n, out

    try:
        result = measure_workflows(run, spec, db)
        result["version"] = version("langgraph")
        result["checkpoint_sqlite_version"] = version("langgraph-checkpoint-sqlite")
        return result
    finally:
        conn.close()


SYSTEMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "raw_sqlite": raw_sqlite,
    "raw_postgres": raw_postgres,
    "kitaru": kitaru_system,
    "dbos": dbos_system,
    "langgraph": langgraph_system,
}


def main() -> int:
    spec = json.loads(sys.argv[1])
    result = SYSTEMS[spec["impl"]](spec)
    result["python"] = sys.version.split()[0]
    result["sqlite"] = sqlite3.sqlite_version
    if "commits" in result:
        result["commit_median_ms"] = statistics.median(result["commits"]) * 1e3
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
