"""A flow run by a separate process for the live-events test: it waits for a gate file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import kitaru
from kitaru import checkpoint, flow


@checkpoint
def gated(gate: str) -> str:
    kitaru.progress("waiting for the gate file", flush=True)
    deadline = time.monotonic() + 120
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never created the gate file")
        time.sleep(0.02)
    kitaru.progress("through the gate")
    return "done"


@flow
def gated_flow(gate: str) -> str:
    return gated(gate)


def main(argv: list[str]) -> None:
    gate, id_file = argv
    handle = gated_flow.run(gate)
    Path(id_file).write_text(handle.exec_id)
    print(handle.wait())


if __name__ == "__main__":
    main(sys.argv[1:])
