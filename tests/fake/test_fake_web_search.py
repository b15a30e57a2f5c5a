"""The fake's Anthropic web search and its stop-reason directive over real HTTP: the searched
answer's blocks in the API's shapes (JSON), the same blocks streamed (server_tool_use with its
input as input_json_delta, the result whole in its start, a cited text block with its
citations_delta before its text), a paused turn, a refusal, and a bad directive refused."""

from __future__ import annotations

import json
import re
from typing import Any

SEARCH = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]


def _body(text: str, **kw: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": text}],
        "tools": SEARCH,
        **kw,
    }


def _same(value: Any) -> Any:
    """``value`` with the per-request ids made one."""
    return json.loads(re.sub(r"fake\d{20}", "RID", json.dumps(value)))


def _fold(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The content a stream's events build, as a client accumulates them."""
    blocks: list[dict[str, Any]] = []
    inputs: dict[int, str] = {}
    for e in events:
        if e["type"] == "content_block_start":
            assert e["index"] == len(blocks)
            blocks.append(dict(e["content_block"]))
        elif e["type"] == "content_block_delta":
            block, delta = blocks[e["index"]], e["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "citations_delta":
                block["citations"].append(delta["citation"])
            elif delta["type"] == "input_json_delta":
                inputs[e["index"]] = inputs.get(e["index"], "") + delta["partial_json"]
    for index, text in inputs.items():
        blocks[index]["input"] = json.loads(text)
    return blocks


async def test_a_search_is_answered_with_server_tool_blocks_and_a_citation(call: Any) -> None:
    d = (await call("anthropic", body=_body("search the web for lisbon"))).json()
    use, result, plain, cited = d["content"]
    assert list(use) == ["type", "id", "name", "input"]
    assert use["type"] == "server_tool_use" and use["id"].startswith("srvtoolu_")
    assert (use["name"], use["input"]) == ("web_search", {"query": "search the web for lisbon"})
    assert result["type"] == "web_search_tool_result" and result["tool_use_id"] == use["id"]
    (found,) = result["content"]
    assert list(found) == ["type", "title", "url", "encrypted_content", "page_age"]
    assert found["type"] == "web_search_result" and found["url"].startswith("https://")
    assert plain == {"type": "text", "text": "Based on the search results:"}
    assert cited["text"] == "echo: search the web for lisbon"
    (cite,) = cited["citations"]
    assert list(cite) == ["type", "cited_text", "url", "title", "encrypted_index"]
    assert (cite["type"], cite["url"], cite["title"]) == (
        "web_search_result_location",
        found["url"],
        found["title"],
    )
    assert d["stop_reason"] == "end_turn"
    assert d["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}


async def test_no_search_without_the_tool_or_the_word(call: Any) -> None:
    offered = (await call("anthropic", body=_body("tell me about lisbon"))).json()
    assert [b["type"] for b in offered["content"]] == ["text"]
    assert "server_tool_use" not in offered["usage"]
    body = _body("search for lisbon")
    del body["tools"]
    assert [b["type"] for b in (await call("anthropic", body=body)).json()["content"]] == ["text"]


async def test_the_streamed_search_builds_the_same_content(call: Any, parse_sse: Any) -> None:
    whole = _same((await call("anthropic", body=_body("search for lisbon"))).json())
    r = await call("anthropic", body=_body("search for lisbon", stream=True))
    events = _same([json.loads(d) for _, d in parse_sse(r.text)])
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts[0] == {**whole["content"][0], "input": {}}
    assert starts[1] == whole["content"][1]  # a result comes whole in its start
    assert starts[3] == {"type": "text", "text": "", "citations": []}
    cited = [e["index"] for e in events if e["type"] == "content_block_delta"]
    kinds = [e["delta"]["type"] for e in events if e["type"] == "content_block_delta" and e["index"] == 3]
    assert kinds[0] == "citations_delta" and set(kinds[1:]) == {"text_delta"}
    assert sorted(set(cited)) == [0, 2, 3]  # the result has no delta
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert stops == [0, 1, 2, 3]
    assert _fold(events) == whole["content"]
    end = next(e for e in events if e["type"] == "message_delta")
    assert end["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert end["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}


async def test_a_paused_search_ends_after_its_result(call: Any, parse_sse: Any) -> None:
    d = (await call("anthropic", body=_body("search lisbon [[fake: stop_reason=pause_turn]]"))).json()
    assert [b["type"] for b in d["content"]] == ["server_tool_use", "web_search_tool_result"]
    assert (d["stop_reason"], d["stop_sequence"]) == ("pause_turn", None)
    r = await call("anthropic", body=_body("search lisbon [[fake: stop_reason=pause_turn]]", stream=True))
    end = next(json.loads(x) for n, x in parse_sse(r.text) if n == "message_delta")
    assert end["delta"]["stop_reason"] == "pause_turn"


async def test_stop_reason_directives_and_their_refusal(call: Any) -> None:
    refused = await call("anthropic", "hi", headers={"x-fake": "stop_reason=refusal"})
    assert refused.json()["stop_reason"] == "refusal"
    assert refused.json()["content"] == [{"type": "text", "text": "echo: hi"}]
    openai = await call("openai", "hi", headers={"x-fake": "stop_reason=refusal"})
    assert openai.json()["choices"][0]["finish_reason"] == "content_filter"
    bad = await call("anthropic", "hi", headers={"x-fake": "stop_reason=end_turn"})
    assert bad.status_code == 400 and "stop_reason" in bad.json()["error"]["message"]
