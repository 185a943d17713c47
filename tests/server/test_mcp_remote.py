"""``kitaru-mcp`` on a machine that talks to a Kitaru server (not to the store)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from tests._extras import need

need("mcp", "mcp")

from mcp import Client, StdioServerParameters  # noqa: E402

from kitaru import checkpoint, flow  # noqa: E402
from tests._env import process_env  # noqa: E402
from tests.server.conftest import Server  # noqa: E402


@checkpoint
def shout(text: str) -> str:
    return text.upper()


@flow(cache=False)
def loud(text: str) -> str:
    return shout(text)


def test_mcp_reads_executions_through_the_server(server: Server, tmp_path: Path) -> None:
    handle = loud.run("hello")  # written to the store by this process
    assert handle.wait(timeout=30) == "HELLO"
    script = shutil.which("kitaru-mcp", path=str(Path(sys.executable).parent))
    assert script is not None
    # Its own config dir and no store URL: only the server connection.
    env = process_env(
        tmp_path / "mcp-home", KITARU_SERVER_URL=server.url, KITARU_AUTH_TOKEN=server.admin_key
    )

    async def main() -> list[Any]:
        params = StdioServerParameters(command=script, env=env, cwd=str(tmp_path))
        async with Client(params, read_timeout_seconds=60) as client:
            got = await client.call_tool("kitaru_executions_get", {"exec_id": handle.exec_id})
            status = await client.call_tool("kitaru_status", {})
            missing = await client.call_tool("kitaru_executions_get", {"exec_id": "nope"})
            return [got, status, missing]

    got, status, missing = asyncio.run(main())
    assert not got.is_error, got.content
    execution = json.loads(got.content[0].text)
    assert execution["status"] == "completed"
    assert [c["name"] for c in execution["checkpoints"]] == ["shout"]
    assert json.loads(status.content[0].text)["connection"]["url"] == server.url
    assert missing.is_error
    assert "KitaruBackendError" in missing.content[0].text
