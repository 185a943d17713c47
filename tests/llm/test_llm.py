"""kitaru.llm(): durable model calls on the real SDKs against the fake provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import KitaruClient, KitaruContextError, KitaruUsageError, checkpoint, flow
from tests.fakes.llm_server import CHAT, MESSAGES, FakeLlmServer, Reply
from tests.llm.conftest import OPENAI_KEY


def test_flow_body_call_is_a_durable_llm_call(provider: FakeLlmServer) -> None:
    provider.script(Reply("Paris", input_tokens=20, output_tokens=5))

    @flow
    def ask() -> str:
        return kitaru.llm("Capital of France?", model="openai/gpt-4o-mini", system="Be brief.")

    handle = ask.run()
    assert handle.wait() == "Paris"
    request = provider.requests[0]
    assert request.api == CHAT
    assert request.model == "gpt-4o-mini"
    assert request.api_key == OPENAI_KEY
    assert request.body["messages"][0] == {"role": "system", "content": "Be brief."}
    execution = KitaruClient().executions.get(handle.exec_id)
    (call,) = execution.checkpoints
    assert (call.call_id, call.checkpoint_type) == ("llm", "llm_call")
    (usage,) = call.llm_usage_records
    assert usage["model"] == "openai/gpt-4o-mini"
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        20,
        5,
        25,
    )
    assert usage["credential_source"] == "OPENAI_API_KEY"
    assert usage["cost_source"] == "estimated"
    assert usage["cost_usd"] > 0
    kinds = {(a.name, a.kind) for a in call.artifacts}
    assert ("llm.prompt", "prompt") in kinds
    assert call.output is not None
    assert call.output.kind == "response"
    summary = execution.llm_usage_summary
    assert summary is not None
    assert summary["total_tokens"] == 25
    assert OPENAI_KEY not in repr(execution.to_dict())


def test_in_checkpoint_calls_are_recorded_on_the_checkpoint(provider: FakeLlmServer) -> None:
    provider.script(
        Reply("one", input_tokens=3, output_tokens=1), Reply("two", input_tokens=4, output_tokens=2)
    )

    @checkpoint
    def research(topic: str) -> str:
        first = kitaru.llm(topic, model="anthropic/claude-haiku-4-5")
        return first + " " + kitaru.llm([{"role": "user", "content": topic}], model="openai/gpt-4o")

    @flow
    def agent() -> str:
        return research("durability")

    handle = agent.run()
    assert handle.wait() == "one two"
    assert [r.api for r in provider.requests] == [MESSAGES, CHAT]
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert call.name == "research"
    assert call.checkpoint_type is None
    assert [r["provider"] for r in call.llm_usage_records] == ["anthropic", "openai"]
    assert call.aggregated_llm_usage_summary["total_tokens"] == 10
    names = {a.name for a in call.artifacts}
    assert {"research/llm.prompt", "research/llm.response", "research/llm:2.prompt"} <= names


def test_outside_a_flow_and_bad_prompts() -> None:
    with pytest.raises(KitaruContextError, match="outside a running flow"):
        kitaru.llm("hi", model="openai/gpt-4o")
    seen: list[str] = []

    @flow
    def bad(prompt: Any) -> None:
        try:
            kitaru.llm(prompt, model="openai/gpt-4o")
        except KitaruUsageError as exc:
            seen.append(str(exc))

    for prompt in ("", [], [{"role": "robot", "content": "x"}], [{"role": "user"}], 3):
        bad.run(prompt).wait()
    assert len(seen) == 5
    assert "role 'robot'" in seen[2]


def _catching(prompt: str = "q", **options: Any) -> Any:
    """A flow that returns the reply, or the error kitaru.llm() raised (type, message, extra)."""

    @flow
    def call() -> Any:
        try:
            return kitaru.llm(prompt, **options)
        except kitaru.KitaruError as exc:
            return {
                "type": type(exc).__name__,
                "message": str(exc),
                "status": getattr(exc, "status_code", None),
                "transient": getattr(exc, "transient", None),
            }

    return call


def test_transient_errors_are_retried_and_recorded_as_attempts(provider: FakeLlmServer) -> None:
    provider.script(Reply.fail(429), Reply.fail(500, "boom"), Reply("finally"))
    handle = _catching(model="openai/gpt-4o-mini").run()
    assert handle.wait() == "finally"
    assert provider.count() == 3
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [a.status.value for a in call.attempts] == ["failed", "failed", "completed"]
    assert "HTTP 429" in (call.attempts[0].message or "")
    assert "HTTP 500" in (call.attempts[1].message or "")
    (usage,) = call.llm_usage_records
    assert usage["attempt"] == 3
    assert call.attempts[2].llm_usage_records == [usage]
    assert call.attempts[0].llm_usage_records == []


def test_retries_run_out_and_timeouts_count_as_transient(
    provider: FakeLlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LLM_RETRIES", "1")
    monkeypatch.setenv("KITARU_LLM_TIMEOUT", "0.3")
    provider.script(Reply("slow", delay=2.0), Reply.fail(503))
    result = _catching(model="openai/gpt-4o-mini").run().wait()
    assert result["type"] == "KitaruLlmProviderError"
    assert result["status"] == 503
    assert result["transient"] is True
    assert provider.count() == 2

    provider.script(Reply("slow", delay=2.0), Reply("quick"))
    handle = _catching(model="anthropic/claude-test").run()
    assert handle.wait() == "quick"
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert "timed out after 0.3 s" in (call.attempts[0].message or "")


def test_provider_errors_are_not_retried_when_final_and_never_show_the_key(
    provider: FakeLlmServer,
) -> None:
    provider.script(Reply.fail(401, f"Incorrect API key provided: {OPENAI_KEY}. Check it."))

    @flow
    def leaky() -> str:
        return kitaru.llm("q", model="openai/gpt-4o-mini")

    handle = leaky.run()
    with pytest.raises(kitaru.KitaruUserCodeError) as info:
        handle.wait()
    assert provider.count() == 1  # a 401 is not retried
    assert OPENAI_KEY not in str(info.value)
    execution = KitaruClient().executions.get(handle.exec_id)
    document = json.dumps(execution.to_dict(), default=str)
    assert "HTTP 401" in document
    assert "***" in document
    assert OPENAI_KEY not in document  # message, traceback, attempts, metadata
    logs = KitaruClient().executions.logs(handle.exec_id, source="runner")
    assert all(OPENAI_KEY not in entry.message for entry in logs)


def test_model_resolution_order_and_frozen_registry(
    provider: FakeLlmServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kitaru._llm._registry import register_model, remove_model

    register_model("fast", "openai/gpt-4o-mini")
    register_model("smart", "anthropic/claude-test", default=True)
    flag = tmp_path / "go-on"

    @flow
    def two_calls(explicit: str | None) -> list[str]:
        first = kitaru.llm("one", model=explicit)
        if not flag.exists():
            raise RuntimeError("stop after the first call")
        return [first, kitaru.llm("two")]

    assert _catching().run().wait() == "echo: q"
    assert (provider.requests[-1].api, provider.requests[-1].model) == (MESSAGES, "claude-test")
    monkeypatch.setenv("KITARU_DEFAULT_MODEL", "fast")
    assert _catching().run().wait() == "echo: q"
    assert (provider.requests[-1].api, provider.requests[-1].model) == (CHAT, "gpt-4o-mini")
    _catching(model="openai/gpt-4.1").run().wait()
    assert provider.requests[-1].model == "gpt-4.1"

    # The registry and KITARU_DEFAULT_MODEL are frozen at submission: a retry
    # after both changed still resolves the second call's model the same way.
    handle = two_calls.run(None)
    with pytest.raises(kitaru.KitaruUserCodeError):
        handle.wait()
    remove_model("fast")
    monkeypatch.setenv("KITARU_DEFAULT_MODEL", "anthropic/claude-other")
    flag.touch()
    before = provider.count()
    retried = KitaruClient().executions.retry(handle.exec_id, wait=True)
    assert retried.status.value == "completed"
    assert [r.model for r in provider.requests[before:]] == ["gpt-4o-mini"]  # only the 2nd call
    spec = KitaruClient().executions.get(handle.exec_id).frozen_execution_spec
    assert spec is not None
    assert spec.model_registry is not None
    assert spec.model_registry["default_model"] == "fast"
    assert set(spec.model_registry["aliases"]) == {"fast", "smart"}


def test_model_errors_name_the_fix(provider: FakeLlmServer) -> None:
    no_model = _catching().run().wait()
    assert no_model["type"] == "KitaruUsageError"
    assert "KITARU_DEFAULT_MODEL" in no_model["message"]
    unknown = _catching(model="acme/model-1").run().wait()
    assert unknown["type"] == "KitaruUsageError"
    assert "unknown model provider 'acme'" in unknown["message"]
    assert "openai/, anthropic/, ollama/, openrouter/" in unknown["message"]
    not_alias = _catching(model="nosuchalias").run().wait()
    assert "neither 'provider/model' nor a registered alias" in not_alias["message"]
    assert provider.count() == 0


def test_credential_order_env_then_alias_secret(
    provider: FakeLlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kitaru._llm._registry import register_model

    register_model("viasecret", "openai/gpt-4o-mini", secret="oai")
    monkeypatch.delenv("OPENAI_API_KEY")
    missing = _catching(model="viasecret").run().wait()
    assert missing["type"] == "KitaruUsageError"
    assert "OPENAI_API_KEY" in missing["message"]
    assert "'oai'" in missing["message"]

    secret_key = "sk-from-the-secret-abcdef123456"
    kitaru.create_secret("oai", {"OPENAI_API_KEY": secret_key})
    handle = _catching(model="viasecret").run()
    assert handle.wait() == "echo: q"
    assert provider.requests[-1].api_key == secret_key
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert call.llm_usage_records[0]["credential_source"] == "secret:oai"
    document = json.dumps(KitaruClient().executions.get(handle.exec_id).to_dict(), default=str)
    assert secret_key not in document

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)  # the env var wins over the secret
    _catching(model="viasecret").run().wait()
    assert provider.requests[-1].api_key == OPENAI_KEY

    monkeypatch.delenv("OPENAI_API_KEY")
    plain = _catching(model="openai/gpt-4o-mini").run().wait()
    assert "set the OPENAI_API_KEY environment variable" in plain["message"]
    assert "--secret NAME" in plain["message"]


def test_undecryptable_alias_secret_names_the_key_not_a_missing_secret(
    provider: FakeLlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    from kitaru._llm._registry import register_model

    register_model("fast", "openai/gpt-4o-mini", secret="c")
    kitaru.create_secret("c", {"OPENAI_API_KEY": "sk-from-the-secret-abcdef123456"})
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("KITARU_SECRETS_KEY", Fernet.generate_key().decode())
    failed = _catching(model="fast").run().wait()
    assert failed["type"] == "KitaruStateError"
    assert "cannot be decrypted" in failed["message"]
    assert "KITARU_SECRETS_KEY" in failed["message"]
    assert "does not exist" not in failed["message"]
    assert "create the secret" not in failed["message"]
    assert provider.count() == 0


def test_mock_response_sends_nothing(
    provider: FakeLlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_LLM_MOCK_RESPONSE", "mocked answer")
    monkeypatch.delenv("OPENAI_API_KEY")
    handle = _catching(model="openai/gpt-4o-mini").run()
    assert handle.wait() == "mocked answer"
    assert provider.count() == 0
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    (usage,) = call.llm_usage_records
    assert usage["mocked"] is True
    assert usage["total_tokens"] == 0
    assert usage["cost_usd"] is None


def test_missing_sdk_names_the_extra(provider: FakeLlmServer) -> None:
    code = (
        "import sys\n"
        "sys.modules['anthropic'] = None  # as if the SDK were not installed\n"
        "import kitaru\n"
        "@kitaru.flow\n"
        "def f():\n"
        "    try:\n"
        "        return kitaru.llm('q', model='anthropic/claude-test')\n"
        "    except kitaru.KitaruUsageError as exc:\n"
        "        return 'usage: ' + str(exc)\n"
        "print(f.run().wait())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")
    assert "kitaru[anthropic]" in done.stdout
    assert "kitaru[llm]" in done.stdout
    assert provider.count() == 0


def test_ollama_and_openrouter_speak_chat_completions(
    provider: FakeLlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{provider.port}")
    monkeypatch.setenv("OPENROUTER_BASE_URL", provider.openai_base_url)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-0123456789")
    handle = _catching(model="ollama/llama3.2").run()
    assert handle.wait() == "echo: q"
    assert (provider.requests[-1].api, provider.requests[-1].model) == (CHAT, "llama3.2")
    (local,) = KitaruClient().executions.get(handle.exec_id).llm_usage_records
    assert (local["provider"], local["credential_source"], local["cost_usd"]) == (
        "ollama",
        None,
        None,
    )
    _catching(model="openrouter/openai/gpt-4o-mini").run().wait()
    assert provider.requests[-1].model == "openai/gpt-4o-mini"
    assert provider.requests[-1].api_key == "sk-or-test-0123456789"


def test_executions_get_and_statistics_cli_show_usage(provider: FakeLlmServer) -> None:
    from tests._cli import in_process

    provider.script(Reply("x", input_tokens=100, output_tokens=20))
    handle = _catching(model="openai/gpt-4o-mini").run()
    handle.wait()
    cli = in_process()
    text = cli("executions", "get", handle.exec_id)
    assert text.exit_code == 0, text.stderr
    assert "LLM usage" in text.stdout
    assert "120 tokens (100 in / 20 out)" in text.stdout
    item = cli("executions", "get", handle.exec_id, "-o", "json").json()["item"]
    assert item["llm_usage_summary"]["total_tokens"] == 120
    assert item["llm_usage_records"][0]["model"] == "openai/gpt-4o-mini"
    listed = cli("executions", "list", "-o", "json").json()["items"][0]
    assert listed["llm_usage_summary"]["total_tokens"] == 120
    stats = cli(
        "executions",
        "statistics",
        "--metric",
        "llm_total_tokens",
        "--metric",
        "tokens:llm_prompt_tokens:max",
        "-o",
        "json",
    ).json()["item"]
    assert stats["groups"][0]["metrics"] == {"llm_total_tokens": 120.0, "tokens": 100.0}
