"""kitaru.llm() tests run the real SDKs against the fake provider (tests/fakes/llm_server.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fakes.llm_server import FakeLlmServer

#: Key-shaped, so that redaction by pattern and by value are both exercised.
OPENAI_KEY = "sk-test-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the {module} SDK is missing in CI: the dev extra installs it")
        pytest.skip(f"needs the {module} SDK: pip install -e '.[dev]' (the llm extra)")


@pytest.fixture
def provider(llm_server: FakeLlmServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLlmServer]:
    """The fake server as the OpenAI and Anthropic endpoints, with keys in the env."""
    _require("openai")
    _require("anthropic")
    from kitaru._llm._providers import forget_clients

    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.anthropic_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("KITARU_LLM_TIMEOUT", "5")
    for name in ("OPENROUTER_API_KEY", "KITARU_LLM_MOCK_RESPONSE", "KITARU_DEFAULT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    forget_clients()
    yield llm_server
    forget_clients()
