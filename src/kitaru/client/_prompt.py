"""Answering pending waits at a terminal (``handle.wait()`` and ``--interactive``)."""

from __future__ import annotations

import json
import sys
from typing import Any

from kitaru._backend import get_backend
from kitaru._runtime import control
from kitaru.errors import KitaruError, KitaruWaitValidationError


def parse_answer(text: str) -> Any:
    """JSON when it parses (true, 3, {"a": 1}); otherwise the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def prompt_pending_waits(exec_id: str | None, *, skip: set[str] | None = None) -> set[str]:
    """Ask for each pending wait on stdin; returns the ``exec_id:wait_id`` keys handled.

    An empty line skips a wait; ``!abort`` aborts it. Invalid input is explained
    and asked for again.
    """
    backend = get_backend()
    handled: set[str] = set()
    for wait in backend.store.pending_waits(exec_id):
        key = f"{wait.exec_id}:{wait.wait_id}"
        if skip and key in skip:
            continue
        handled.add(key)
        schema = (wait.json_schema or {}).get("title") or (wait.json_schema or {}).get("type")
        print(
            f"\nExecution {wait.exec_id} is waiting at {wait.wait_id!r}"
            + (f": {wait.question}" if wait.question else "")
            + (f"\n  expects: {schema}" if schema else "\n  (a continue gate: press Enter)"),
            file=sys.stderr,
        )
        while True:
            print(
                "  answer (JSON or text, empty to skip, !abort to abort) > ",
                end="",
                file=sys.stderr,
            )
            sys.stderr.flush()
            line = sys.stdin.readline()
            if not line:
                return handled  # stdin closed
            text = line.rstrip("\n")
            if not text and wait.json_schema is not None:
                break
            try:
                control.give_input(
                    backend,
                    wait.exec_id,
                    wait=wait.wait_id,
                    value=None if not text else parse_answer(text),
                    abort=text == "!abort",
                )
            except KitaruWaitValidationError as exc:
                print(f"  invalid: {exc}", file=sys.stderr)
                continue
            except KitaruError as exc:
                print(f"  {exc}", file=sys.stderr)
            break
    return handled
