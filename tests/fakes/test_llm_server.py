"""The fake LLM server answers the real openai and anthropic SDKs (all three protocols)."""

from __future__ import annotations

import pytest

from tests.fakes.llm_server import CHAT, MESSAGES, RESPONSES, FakeLlmServer, Reply, ToolCall

openai = pytest.importorskip("openai", reason="install the llm extra: pip install -e '.[dev]'")
anthropic = pytest.importorskip(
    "anthropic", reason="install the llm extra: pip install -e '.[dev]'"
)


def _openai(server: FakeLlmServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)


def _anthropic(server: FakeLlmServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=server.anthropic_base_url, api_key="sk-ant-test", max_retries=0
    )


def test_chat_completions_plain_and_streaming(llm_server: FakeLlmServer) -> None:
    client = _openai(llm_server)
    llm_server.script(Reply("hello", input_tokens=7, output_tokens=3))
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "hello"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, 3)

    llm_server.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]))
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    arguments = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert arguments == '{"city": "Paris"}'
    assert chunks[-1].usage is not None
    assert llm_server.count(CHAT) == 2
    assert llm_server.requests[0].api_key == "sk-test"


def test_responses_api_plain_and_streaming(llm_server: FakeLlmServer) -> None:
    client = _openai(llm_server)
    response = client.responses.create(model="gpt-4o", input="ping")
    assert response.output_text == "echo: ping"
    assert response.usage.output_tokens >= 1

    llm_server.script(Reply("streamed text", tool_calls=[ToolCall("lookup", {"q": 1})]))
    with client.responses.stream(model="gpt-4o", input="x") as stream:
        final = stream.get_final_response()
    assert final.output_text == "streamed text"
    assert final.output[1].type == "function_call"
    assert final.output[1].arguments == '{"q": 1}'
    assert llm_server.count(RESPONSES) == 2


def test_anthropic_messages_plain_and_streaming(llm_server: FakeLlmServer) -> None:
    client = _anthropic(llm_server)
    message = client.messages.create(
        model="claude-test-model", max_tokens=50, messages=[{"role": "user", "content": "yo"}]
    )
    assert message.content[0].text == "echo: yo"

    llm_server.script(Reply("part", tool_calls=[ToolCall("search", {"term": "kitaru"})]))
    with client.messages.stream(
        model="claude-test-model", max_tokens=50, messages=[{"role": "user", "content": "s"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "part"
    assert final.content[1].input == {"term": "kitaru"}
    assert final.stop_reason == "tool_use"
    assert llm_server.count(MESSAGES) == 2
    assert llm_server.requests[-1].api_key == "sk-ant-test"


def test_errors_and_delays_are_injectable(llm_server: FakeLlmServer) -> None:
    llm_server.script(Reply.fail(429), Reply.fail(500, "boom"), Reply("late", delay=0.3))
    client = _openai(llm_server)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
    with pytest.raises(openai.InternalServerError, match="boom"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.1).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "a"}]
        )
    assert llm_server.count() == 3
    assert llm_server.pending == 0
