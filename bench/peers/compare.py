"""Kitaru side by side with DBOS and LangGraph: the cost of one durable no-op step.

Installs each system into its own venv (pinned versions, Kitaru from this repository),
then measures them interleaved: every round runs every system once, each in a fresh
subprocess with a fresh store. Prints one table. See README.md beside this file.

    python bench/peers/compare.py [--quick] [--rounds N] [--json PATH]
                                  [--postgres-url postgresql://postgres@127.0.0.1:5432/test]

Standard library only: it can run under any Python >= 3.11.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORKER = HERE / "_worker.py"
RESULT_MARK = "PEERS-RESULT "
WORKER_TIMEOUT_S = 900
STRIPPED_ENV_PREFIXES = ("KITARU_", "DBOS_", "LANGCHAIN_", "LANGSMITH_", "LANGGRAPH_")

PSYCOPG = "psycopg[binary]==3.3.9"

# Each venv: what pip installs into it. Changing a list rebuilds that venv.
ENVS: dict[str, list[str]] = {
    "baseline": [PSYCOPG],
    "kitaru": ["-e", f"{REPO}[postgres]"],
    "dbos": ["dbos==3.4.0", PSYCOPG],
    "langgraph": ["langgraph==1.2.24", "langgraph-checkpoint-sqlite==3.1.2"],
}


@dataclass(frozen=True)
class System:
    key: str
    label: str
    env: str
    impl: str
    backend: str  # "sqlite" or "postgres"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def raw(self) -> bool:
        return self.impl.startswith("raw_")


SYSTEMS = [
    System(
        "raw_sqlite",
        "raw SQLite commit (WAL, synchronous=FULL)",
        "baseline",
        "raw_sqlite",
        "sqlite",
    ),
    System(
        "kitaru_sqlite", "Kitaru (default settings)", "kitaru", "kitaru", "sqlite", {"cache": True}
    ),
    System(
        "kitaru_nocache_sqlite",
        "Kitaru @flow(cache=False)",
        "kitaru",
        "kitaru",
        "sqlite",
        {"cache": False},
    ),
    System(
        "dbos_sqlite", "DBOS Transact (its default: rollback journal)", "dbos", "dbos", "sqlite"
    ),
    System(
        "dbos_wal_sqlite",
        "DBOS Transact, file set to WAL first",
        "dbos",
        "dbos",
        "sqlite",
        {"wal": True},
    ),
    System(
        "langgraph_sqlite",
        "LangGraph + SqliteSaver, durability=sync",
        "langgraph",
        "langgraph",
        "sqlite",
    ),
    System(
        "raw_postgres", "raw PostgreSQL autocommit INSERT", "baseline", "raw_postgres", "postgres"
    ),
    System(
        "kitaru_postgres",
        "Kitaru (default settings)",
        "kitaru",
        "kitaru",
        "postgres",
        {"cache": True},
    ),
    System(
        "kitaru_nocache_postgres",
        "Kitaru @flow(cache=False)",
        "kitaru",
        "kitaru",
        "postgres",
        {"cache": False},
    ),
    System("dbos_postgres", "DBOS Transact", "dbos", "dbos", "postgres"),
]
REFERENCE = {"sqlite": "kitaru_sqlite", "postgres": "kitaru_postgres"}
BASELINE = {"sqlite": "raw_sqlite", "postgres": "raw_postgres"}


@dataclass(frozen=True)
class Plan:
    rounds: int
    sizes: list[int]
    reps: dict[int, int]
    raw_warm_commits: int
    raw_commits: int

    @property
    def top(self) -> int:
        return max(self.sizes)


FULL = Plan(5, [0, 1, 100, 1000], {0: 20, 1: 20, 100: 5, 1000: 2}, 300, 1000)
QUICK = Plan(2, [0, 1, 100], {0: 5, 1: 5, 100: 2}, 100, 300)


def progress(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- venvs -------------------------------------------------------------------------------


def venv_python(venvs: Path, env: str) -> Path:
    return venvs / env / "bin" / "python"


def ensure_venv(venvs: Path, env: str, base_python: str, reinstall: bool) -> dict[str, Any]:
    """Create or reuse ``venvs/env`` with ``ENVS[env]``; returns its freeze or an error."""
    target = venvs / env
    stamp = target / "peers-spec.json"
    wanted = json.dumps({"requirements": ENVS[env], "python": base_python})
    if reinstall or not stamp.exists() or stamp.read_text() != wanted:
        shutil.rmtree(target, ignore_errors=True)
        progress(f"installing {env}: {' '.join(ENVS[env])}")
        steps = [
            [base_python, "-m", "venv", str(target)],
            [str(target / "bin" / "pip"), "install", "-q", *ENVS[env]],
        ]
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                lines = [x for x in proc.stderr.splitlines() if not x.startswith("WARNING")]
                error = lines[-1] if lines else f"exit status {proc.returncode}"
                progress(f"{env}: install failed: {error}")
                shutil.rmtree(target, ignore_errors=True)
                return {"installed": False, "error": error, "log": proc.stderr[-4000:]}
        stamp.write_text(wanted)
    freeze = subprocess.run(
        [str(target / "bin" / "pip"), "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return {"installed": True, "requirements": ENVS[env], "freeze": freeze}


# -- running one measurement -------------------------------------------------------------


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED_ENV_PREFIXES)}
    env.pop("PYTHONPATH", None)
    return env


def run_worker(python: Path, spec: dict[str, Any], cwd: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), str(WORKER), json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        timeout=WORKER_TIMEOUT_S,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
    raise RuntimeError(f"exit status {proc.returncode}: " + "\n".join(tail))


def round_figures(system: System, result: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """One round's figures in ms: the raw commit, or the empty run and the per-step costs."""
    if system.raw:
        return {"commit_ms": statistics.median(result["commits"]) * 1e3}
    times = {int(n): v for n, v in result["times"].items()}
    empty = statistics.median(times[0])
    per_step = {n: (statistics.median(times[n]) - empty) / n * 1e3 for n in plan.sizes if n > 0}
    return {"empty_ms": empty * 1e3, "per_step_ms": per_step}


# -- report ------------------------------------------------------------------------------


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None or den <= 0 else num / den


def summarize(
    systems: Sequence[System], rounds: dict[str, list[dict[str, Any]]], plan: Plan
) -> dict[str, dict[str, Any]]:
    """Medians over rounds of each figure, and of each round's ratios.

    A ratio is taken within a round (the system against the raw commit and the Kitaru
    run of the same round) and then the median over rounds, so a disk or machine that
    drifts between rounds moves both sides of a ratio together.
    """
    by_round = {k: {f["round"]: f for f in figs} for k, figs in rounds.items()}
    out: dict[str, dict[str, Any]] = {}
    for s in systems:
        figures = rounds.get(s.key) or []
        if not figures:
            continue
        if s.raw:
            commits = [f["commit_ms"] for f in figures]
            out[s.key] = {"commit_ms": statistics.median(commits), "range_ms": minmax(commits)}
            continue
        top = [f["per_step_ms"][plan.top] for f in figures]
        raw = by_round.get(BASELINE[s.backend], {})
        ref = by_round.get(REFERENCE[s.backend], {})
        to_raw, to_ref, empty_to_ref = [], [], []
        for f in figures:
            r = f["round"]
            if r in raw:
                to_raw.append(f["per_step_ms"][plan.top] / raw[r]["commit_ms"])
            if r in ref:
                to_ref.append(f["per_step_ms"][plan.top] / ref[r]["per_step_ms"][plan.top])
                empty_to_ref.append(f["empty_ms"] / ref[r]["empty_ms"])
        out[s.key] = {
            "empty_ms": statistics.median(f["empty_ms"] for f in figures),
            "per_step_ms": {
                n: statistics.median(f["per_step_ms"][n] for f in figures)
                for n in plan.sizes
                if n > 0
            },
            "range_ms": minmax(top),
            "step_to_raw": median_or_none(to_raw),
            "step_to_raw_range": minmax(to_raw),
            "step_to_kitaru": median_or_none(to_ref),
            "empty_to_kitaru": median_or_none(empty_to_ref),
            "rounds": len(figures),
        }
    return out


def minmax(values: Sequence[float]) -> list[float] | None:
    return [min(values), max(values)] if values else None


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def fmt_range(values: list[float] | None, suffix: str = "") -> str:
    return "—" if not values else f"{values[0]:.2f}-{values[1]:.2f}{suffix}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (readable as plain text too)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def build_table(
    systems: Sequence[System],
    summary: dict[str, dict[str, Any]],
    status: dict[str, str],
    plan: Plan,
) -> str:
    top = plan.top
    headers = [
        "system",
        "store",
        *(f"ms/step N={n}" for n in plan.sizes if n > 0),
        f"ms/step N={top} min-max",
        "empty wf ms",
        f"step / raw commit (N={top})",
        "same, min-max",
        f"step / Kitaru (N={top})",
        "empty wf / Kitaru",
    ]
    rows = []
    for s in systems:
        store = "SQLite" if s.backend == "sqlite" else "PostgreSQL"
        blank = ["—"] * (len(headers) - 2)
        fig = summary.get(s.key)
        if fig is None:
            rows.append([s.label, store, status.get(s.key, "no result"), *blank[1:]])
            continue
        if s.raw:
            steps = ["—"] * (len(plan.sizes) - 2) + [fmt(fig["commit_ms"])]
            spread = fmt_range(fig["range_ms"])
            rows.append([s.label, store, *steps, spread, "—", "1.00x", "—", "—", "—"])
            continue
        rows.append(
            [
                s.label,
                store,
                *(fmt(fig["per_step_ms"][n]) for n in plan.sizes if n > 0),
                fmt_range(fig["range_ms"]),
                fmt(fig["empty_ms"], 2),
                fmt_ratio(fig["step_to_raw"]),
                fmt_range(fig["step_to_raw_range"], "x"),
                fmt_ratio(fig["step_to_kitaru"]),
                fmt_ratio(fig["empty_to_kitaru"]),
            ]
        )
    return table(headers, rows)


def kitaru_commit() -> str | None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return None
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine_info(workdir: Path) -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mount = None
    if shutil.which("findmnt"):
        mount = (
            subprocess.run(
                ["findmnt", "-n", "-o", "SOURCE,FSTYPE,TARGET", "-T", str(workdir)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or None
        )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "store_dir": str(workdir),
        "store_mount": mount,
    }


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="N up to 100, 2 rounds, fewer runs")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 5; 2 with --quick)")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    p.add_argument(
        "--postgres-url",
        metavar="URL",
        help="PostgreSQL to measure on (fresh schemas, dropped after); "
        "without it the PostgreSQL rows are skipped",
    )
    p.add_argument(
        "--venvs",
        metavar="DIR",
        default=str(HERE / ".venvs"),
        help="where the per-system venvs live (default bench/peers/.venvs)",
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter the venvs are created from (default: this one)",
    )
    p.add_argument("--reinstall", action="store_true", help="rebuild every venv")
    p.add_argument("--dir", metavar="DIR", help="where to create the stores (default: a tmp dir)")
    return p.parse_args(argv)


def drop_leftover_schemas(python: Path, url: str, prefix: str, cwd: Path) -> None:
    code = (
        "import psycopg,sys\n"
        "u=sys.argv[1].replace('+psycopg','')\n"
        "with psycopg.connect(u, autocommit=True) as c:\n"
        "    names=[r[0] for r in c.execute("
        "\"select nspname from pg_namespace where nspname like %s\", (sys.argv[2]+'%',))]\n"
        "    for n in names: c.execute(f'DROP SCHEMA IF EXISTS \"{n}\" CASCADE')\n"
    )
    subprocess.run(
        [str(python), "-c", code, url, prefix],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        check=False,
        timeout=120,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(
        args.rounds or base.rounds, base.sizes, base.reps, base.raw_warm_commits, base.raw_commits
    )
    pg_url: str | None = args.postgres_url
    systems = [s for s in SYSTEMS if pg_url or s.backend == "sqlite"]
    venvs = Path(args.venvs).resolve()
    venvs.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    commit = kitaru_commit()

    envs = {
        name: ensure_venv(venvs, name, args.python, args.reinstall)
        for name in sorted({s.env for s in systems})
    }
    status = {
        s.key: f"not installed: {envs[s.env]['error']}"
        for s in systems
        if not envs[s.env]["installed"]
    }
    runnable = [s for s in systems if s.key not in status]

    root = Path(tempfile.mkdtemp(prefix="kitaru-peers-", dir=args.dir))
    run_id = uuid.uuid4().hex[:8]
    schema_prefix = f"peers_{run_id}_"
    per_round: dict[str, list[dict[str, Any]]] = {s.key: [] for s in runnable}
    raw_results: dict[str, list[dict[str, Any]]] = {s.key: [] for s in runnable}
    errors: dict[str, list[str]] = {}
    try:
        for r in range(plan.rounds):
            shift = r % len(runnable)
            order = runnable[shift:] + runnable[:shift]  # rotate: no system always first
            for s in order:
                workdir = root / f"r{r}-{s.key}"
                workdir.mkdir()
                spec: dict[str, Any] = {
                    "impl": s.impl,
                    "workdir": str(workdir),
                    "sizes": plan.sizes,
                    "reps": {str(n): c for n, c in plan.reps.items()},
                    "raw_warm_commits": plan.raw_warm_commits,
                    "raw_commits": plan.raw_commits,
                    **s.options,
                }
                if s.backend == "postgres":
                    spec["postgres_url"] = pg_url
                    spec["schema"] = f"{schema_prefix}r{r}_{s.key}"
                t0 = time.perf_counter()
                try:
                    result = run_worker(venv_python(venvs, s.env), spec, workdir)
                except Exception as exc:
                    progress(f"round {r + 1}: {s.key} FAILED: {exc}")
                    errors.setdefault(s.key, []).append(str(exc))
                    continue
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
                figures = {"round": r, **round_figures(s, result, plan)}
                per_round[s.key].append(figures)
                result.pop("commits", None)
                raw_results[s.key].append(result)
                shown = (
                    f"commit {figures['commit_ms']:.3f} ms"
                    if s.raw
                    else f"empty {figures['empty_ms']:.2f} ms, "
                    f"{figures['per_step_ms'][plan.top]:.3f} ms/step"
                )
                progress(
                    f"round {r + 1}/{plan.rounds}: {s.key}: {shown} "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
    finally:
        if pg_url and envs.get("baseline", {}).get("installed"):
            drop_leftover_schemas(venv_python(venvs, "baseline"), pg_url, schema_prefix, root)
        shutil.rmtree(root, ignore_errors=True)

    for key, errs in errors.items():
        if not per_round.get(key):
            status[key] = f"failed in every round: {errs[-1].splitlines()[-1][:80]}"
    summary = summarize(systems, per_round, plan)
    versions = {}
    for s in runnable:
        if raw_results[s.key]:
            first = raw_results[s.key][0]
            versions[s.env] = {
                k: first[k]
                for k in ("version", "checkpoint_sqlite_version", "python", "sqlite")
                if k in first
            }
    meta: dict[str, Any] = {
        "date_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round((dt.datetime.now(dt.UTC) - started).total_seconds()),
        "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "command": "python " + shlex.join(["bench/peers/compare.py", *(argv or sys.argv[1:])]),
        "machine": machine_info(root.parent),
        "plan": {"rounds": plan.rounds, "sizes": plan.sizes, "reps": plan.reps},
        "versions": versions,
        "kitaru_commit": commit,
        "postgres": next(
            (r[0]["store"] for k, r in raw_results.items() if k == "raw_postgres" and r), None
        ),
    }
    report = build_table(systems, summary, status, plan)
    m = meta["machine"]
    print(f"{meta['date_utc']} · {m['cpus']} CPUs ({m['cpu_model']}) · {m['platform']}")
    load = meta["load_average_1_5_15"]
    print(
        f"took {meta['duration_s']} s · load average (1/5/15 min) before "
        + "/".join(f"{x:.1f}" for x in load["before"])
        + ", after "
        + "/".join(f"{x:.1f}" for x in load["after"])
    )
    print(f"stores in {m['store_mount'] or m['store_dir']} · command: {meta['command']}")
    print(
        "versions: "
        + "; ".join(
            f"{env}: " + ", ".join(f"{k} {v}" for k, v in info.items())
            for env, info in sorted(versions.items())
        )
    )
    print(f"kitaru from this repository at {meta['kitaru_commit']}")
    if meta["postgres"]:
        print("postgres: " + ", ".join(f"{k}={v}" for k, v in meta["postgres"].items()))
    if not pg_url:
        print("PostgreSQL rows skipped: pass --postgres-url to measure them.")
    print(
        f"medians over {plan.rounds} interleaved rounds; per step = "
        "(median wf of N steps - median empty wf) / N; fresh process and store per cell"
    )
    print()
    print(report)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "meta": meta,
                    "summary": summary,
                    "status": status,
                    "errors": errors,
                    "rounds": per_round,
                    "results": raw_results,
                    "envs": envs,
                    "table": report,
                },
                indent=2,
                default=str,
            )
        )
        progress(f"wrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
