"""Child processes for the log-capture hardening tests (``python -c`` with the repo on the path).

``main([SCENARIO])`` runs one scenario; each prints ``EXEC <id>`` lines for the
executions it ran so the test can read their stored logs back.
"""

from __future__ import annotations

import logging
import sys
import threading

from kitaru import checkpoint, flow

user = logging.getLogger("app.user")


# --- records outside a flow after a flow ran ---------------------------------------------


@checkpoint
def inner_step() -> int:
    print("inside checkpoint print")
    user.warning("inside checkpoint record")
    return 1


@flow
def talks() -> int:
    print("inside body print")
    user.warning("inside body record")
    try:
        raise ValueError("inside boom")
    except ValueError:
        user.exception("inside failure")  # printed with its traceback, stored once
    return inner_step()


@flow
def talks_to_own_handler() -> int:
    logging.getLogger("app.own").warning("own record")
    return 1


def _say_exec(exec_id: str) -> None:
    # One write: print() writes the newline separately, and flow threads print too.
    sys.stdout.write(f"EXEC {exec_id}\n")
    sys.stdout.flush()


def _run(target: object) -> None:
    handle = target.run()  # type: ignore[attr-defined]
    _say_exec(handle.exec_id)
    handle.wait(timeout=60)


def _log_outside(tag: str) -> None:
    user.warning("outside user warning %s", tag)
    user.info("outside user info %s", tag)
    # Kitaru's own loggers (driver, leases, progress) log through "kitaru".
    logging.getLogger("kitaru").warning("outside kitaru warning %s", tag)


def outside_configured() -> None:
    logging.basicConfig(level=logging.INFO, format="CFG|%(name)s|%(message)s")
    _run(talks)
    _log_outside("configured")
    # A handler of the user's own on a child logger, created once the tee is in place.
    own = logging.getLogger("app.own")
    own_handler = logging.StreamHandler()
    own_handler.setFormatter(logging.Formatter("OWN|%(message)s"))
    own.addHandler(own_handler)
    _run(talks_to_own_handler)
    own.warning("own outside")


def outside_unconfigured() -> None:
    _run(talks)
    _log_outside("bare")


def configured_after_a_flow() -> None:
    _run(talks)
    logging.basicConfig(format="LATE|%(name)s|%(message)s")
    _log_outside("late")


# --- unstorable text ------------------------------------------------------------------------

_both_running = threading.Barrier(2, timeout=60)
logging.addLevelName(35, "A_LEVEL_NAME_WIDER_THAN_ITS_COLUMN")


@checkpoint
def bad_step(tag: str) -> int:
    print(f"{tag} step good")
    print(f"{tag} step bad \udc80 line")
    return 1


@flow
def prints_a_bad_line(tag: str) -> int:
    print(f"{tag} good 1")
    user.warning("%s good record", tag)
    _both_running.wait()  # both executions' lines share the batches from here on
    print(f"{tag} bad \udc80 line")
    user.warning("%s bad record \udcff", tag)
    print(f"{tag} nul \x00 line")
    user.log(35, "%s wide level", tag)
    value = bad_step(tag)
    print(f"{tag} good 2")
    _both_running.wait()
    print(f"{tag} good 3")
    return value


def bad_lines() -> None:
    handles = [prints_a_bad_line.run(tag) for tag in ("a", "b")]
    for handle in handles:
        _say_exec(handle.exec_id)
    for handle in handles:
        handle.wait(timeout=60)


# --- a store that cannot take logs ------------------------------------------------------------


@flow
def prints_lines(n: int) -> int:
    for i in range(n):
        print(f"line {i}")
    return n


def logs_table_gone() -> None:
    prints_lines.run(1).wait(timeout=60)  # creates the store
    from kitaru._backend import get_backend

    with get_backend().store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE kitaru_logs")
    for n in (3, 4, 5):  # each run ends with a flush: three failing batches
        sys.stdout.write(f"result {prints_lines.run(n).wait(timeout=60)}\n")


def main(argv: list[str]) -> None:
    {
        "outside_configured": outside_configured,
        "outside_unconfigured": outside_unconfigured,
        "configured_after_a_flow": configured_after_a_flow,
        "bad_lines": bad_lines,
        "logs_table_gone": logs_table_gone,
    }[argv[0]]()
    sys.stdout.flush()
