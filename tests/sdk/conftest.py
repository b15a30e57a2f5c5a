"""Fixtures for the official-SDK tests: a client of each SDK pointed at the session's fake provider
(``sdk_server`` and ``fake``, from tests/conftest.py), with the SDK's retries off so an
injected fault surfaces at once.

Directives reach the fake the way a user of each SDK would send an extra header: ``extra_headers``
(openai, anthropic), ``http_options.headers`` (google-genai), a client's ``headers`` (ollama).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import ollama
import openai
import pytest
from google import genai
from google.genai import types

from engine.fake import FakeServer

WEATHER = {  # a tool's parameters: the fake fills the required ones from this schema
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
}
TIMEOUT = 5.0


@pytest.fixture
def weather() -> dict[str, Any]:
    """The parameters schema of a get_weather tool (city, unit enum, days 1..7, all required)."""
    return WEATHER


@pytest.fixture(scope="session")
def oai(sdk_server: FakeServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=sdk_server.base_url("openai"), api_key="sk-test", max_retries=0, timeout=TIMEOUT
    ) as client:
        yield client


@pytest.fixture(scope="session")
def claude(sdk_server: FakeServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=sdk_server.url, api_key="sk-ant-test", max_retries=0, timeout=TIMEOUT
    ) as client:
        yield client


@pytest.fixture(scope="session")
def gemini(sdk_server: FakeServer) -> Iterator[genai.Client]:
    client = genai.Client(
        api_key="g-test", http_options=types.HttpOptions(base_url=sdk_server.url, timeout=int(TIMEOUT * 1000))
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def gemini_with(gemini: genai.Client) -> Callable[..., types.GenerateContentConfig]:
    """``gemini_with("cached=5", thinking_config=...)``: a config whose request carries the
    directive (google-genai sends per-request headers through ``http_options``)."""

    def config(directive: str = "", **kw: Any) -> types.GenerateContentConfig:
        headers = {"x-fake": directive} if directive else {}
        return types.GenerateContentConfig(http_options=types.HttpOptions(headers=headers), **kw)

    return config


@pytest.fixture
def llama(sdk_server: FakeServer) -> Iterator[Callable[..., ollama.Client]]:
    """``llama("status=500")``: an ollama client whose requests carry the directive."""
    clients: list[ollama.Client] = []

    def client(directive: str = "") -> ollama.Client:
        c = ollama.Client(
            host=sdk_server.url, timeout=TIMEOUT, headers={"x-fake": directive} if directive else None
        )
        clients.append(c)
        return c

    yield client
    for c in clients:
        c.close()
