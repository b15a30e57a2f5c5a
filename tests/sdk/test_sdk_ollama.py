"""The official ``ollama`` client against the fake: chat answers and NDJSON streams parse into its
typed responses (thinking included), Python functions as tools get arguments of their signature,
and statuses and in-stream errors raise ResponseError with Ollama's message."""

from __future__ import annotations

from collections.abc import Callable

import ollama
import pytest

from engine.fake import FakeServer

Llama = Callable[..., ollama.Client]
HI = [{"role": "user", "content": "hello there"}]


def test_chat(llama: Llama) -> None:
    resp = llama().chat(model="llama3.2", messages=HI, stream=False)
    assert isinstance(resp, ollama.ChatResponse)
    assert (resp.message.role, resp.message.content) == ("assistant", "echo: hello there")
    assert (resp.done, resp.done_reason, resp.model) == (True, "stop", "llama3.2")
    assert (resp.prompt_eval_count, resp.eval_count) == (2, 3)
    assert resp.created_at and resp.total_duration and resp.eval_duration
    assert resp.message.thinking is None


def test_stream(llama: Llama) -> None:
    chunks = list(llama().chat(model="llama3.2", messages=HI, stream=True, options={"num_predict": 2}))
    assert "".join(c.message.content for c in chunks) == "echo: hello"
    assert [c.done for c in chunks][-1] is True and chunks[-1].done_reason == "length"


def test_think(llama: Llama) -> None:
    resp = llama().chat(model="qwen3", messages=HI, think=True)
    assert resp.message.thinking == "thinking: hello there"
    assert resp.message.content == "echo: hello there" and resp.eval_count == 6
    chunks = list(llama().chat(model="gpt-oss", messages=HI, think="high", stream=True))
    assert "".join(c.message.thinking or "" for c in chunks) == "thinking: hello there"
    assert "".join(c.message.content for c in chunks) == "echo: hello there"


def test_python_functions_as_tools(llama: Llama) -> None:
    def get_weather(city: str, days: int, metric: bool) -> str:
        """Weather for a city.

        Args:
            city: the city
            days: how many days
            metric: degrees Celsius
        """
        return "sunny"

    resp = llama("tool").chat(model="llama3.2", messages=HI, tools=[get_weather])
    (call,) = resp.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert dict(call.function.arguments) == {"city": "hello there", "days": 1, "metric": True}
    reply = llama().chat(
        model="llama3.2",
        messages=[*HI, resp.message, {"role": "tool", "content": "sunny", "tool_name": "get_weather"}],
    )
    assert reply.message.content == "tool result: sunny"


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
def test_injected_statuses_raise_response_error(llama: Llama, status: int) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        llama(str(status)).chat(model="llama3.2", messages=HI)
    assert info.value.status_code == status
    assert info.value.error.endswith("(injected)")  # the plain-string error, unwrapped


def test_a_refused_request(llama: Llama) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        llama().chat(model="llama3.2", messages=HI, think="max")  # type: ignore[arg-type]
    assert info.value.status_code == 400 and "invalid think value" in info.value.error


def test_in_stream_error(llama: Llama) -> None:
    got: list[str] = []
    with pytest.raises(ollama.ResponseError) as info:
        for chunk in llama("stream_error").chat(
            model="llama3.2", stream=True, messages=[{"role": "user", "content": "a b c d e f"}]
        ):
            got.append(chunk.message.content)
    assert info.value.error == "Overloaded (injected)" and got


def test_list(llama: Llama) -> None:
    assert [m.model for m in llama().list().models] == ["llama3.2:latest", "qwen2.5:0.5b"]


async def test_async_client_streams(fake: FakeServer) -> None:
    client = ollama.AsyncClient(host=fake.url, timeout=5)
    try:
        stream = await client.chat(model="llama3.2", messages=HI, stream=True)
        text = "".join([c.message.content async for c in stream])
    finally:
        await client.close()
    assert text == "echo: hello there"
