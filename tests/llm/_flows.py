"""Flows the LLM crash tests run in a child process (importable again when resumed)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import kitaru
from kitaru import checkpoint, flow

#: Set in the child only: the step after the LLM call reports, then waits to be killed.
HANG_ENV = "LLM_TEST_HANG_MARKER"


@checkpoint
def after_the_call(answer: str) -> str:
    marker = os.environ.get(HANG_ENV)
    if marker:
        Path(marker).write_text("hanging")
        time.sleep(60)  # SIGKILLed by the test long before this ends
        os.kill(os.getpid(), signal.SIGKILL)
    return answer.upper()


@flow
def ask_then_work() -> str:
    answer = kitaru.llm("What is durable execution?", model="openai/gpt-4o-mini")
    return after_the_call(answer)


def main() -> None:
    handle = ask_then_work.run()
    print(handle.exec_id, flush=True)
    handle.wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
