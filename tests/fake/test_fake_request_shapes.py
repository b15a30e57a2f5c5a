"""The fake refuses the Anthropic request shapes the real API refuses (issue 8): an output_config
that is not a json_schema format with an object schema, top_p under 0.95 with thinking on; and
takes the shape engine sends for a json_schema response_format."""

from __future__ import annotations

from typing import Any

import pytest

SCHEMA = {
    "type": "object",
    "properties": {"c": {"type": "string"}},
    "required": ["c"],
    "additionalProperties": False,
}


def _body(**kw: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "hi there"}],
        **kw,
    }


async def test_output_config_json_schema_is_answered(call: Any) -> None:
    config = {"format": {"type": "json_schema", "schema": SCHEMA}, "effort": "high"}
    r = await call("anthropic", body=_body(output_config=config))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"format": {"type": "json_object"}}, "output_config.format: Input tag 'json_object'"),
        ({"format": {"type": "json_schema"}}, "output_config.format.json_schema.schema: Field required"),
        ({"format": {"type": "json_schema", "schema": "{}"}}, "schema: Input should be a valid dictionary"),
        (
            {"format": {"type": "json_schema", "schema": SCHEMA, "name": "x"}},
            "output_config.format.json_schema.name: Extra inputs are not permitted",
        ),
        ({"effort": "extreme"}, "output_config.effort: Input should be"),
        ({"json": True}, "output_config.json: Extra inputs are not permitted"),
    ],
)
async def test_malformed_output_config_is_refused(call: Any, config: dict[str, Any], message: str) -> None:
    r = await call("anthropic", body=_body(output_config=config))
    assert r.status_code == 400
    assert message in r.json()["error"]["message"]


async def test_top_p_under_095_with_thinking_is_refused(call: Any) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    r = await call("anthropic", body=_body(thinking=thinking, top_p=0.5))
    assert r.status_code == 400 and "top_p" in r.json()["error"]["message"]
    r = await call("anthropic", body=_body(thinking=thinking, top_p=0.95))
    assert r.status_code == 200, r.text
