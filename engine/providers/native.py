"""A request's Anthropic-native part: what a client of the gateway's Anthropic dialect wrote that
the unified (OpenAI-style) request cannot hold, kept under the request key ``anthropic``.

The kind ``anthropic`` sends it as written (lossless pass-through); every other kind sends the
unified translation beside it and names, in ``notes`` (``engine plan``), what of it is not carried.

```
"anthropic": {
  "system":      str | [blocks],         # as written (cache_control on blocks kept)
  "messages":    [turns],                 # Anthropic's own turns and content blocks
  "tools":       [tools],                 # input_schema, server tools, cache_control
  "tool_choice": {type, name?, disable_parallel_tool_use?},
  "thinking":    {type: enabled|adaptive|disabled, budget_tokens?},
  "beta":        [flags],                 # the client's anthropic-beta header, split
  "version":     "2023-06-01",            # the client's anthropic-version header
  "extra":       {field: value},          # other top-level fields: service_tier, container, ...
}
```
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["BETA", "KEY", "VERSION", "native", "native_notes"]

KEY: Final = "anthropic"
BETA: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")  # one anthropic-beta flag, as Anthropic spells them
VERSION: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def native(request: dict[str, Any]) -> dict[str, Any] | None:
    """The request's Anthropic-native part, or None."""
    part = request.get(KEY)
    return part if type(part) is dict else None


def _cached(part: dict[str, Any]) -> bool:
    """Whether any block, system block or tool of ``part`` carries ``cache_control``."""
    system = part.get("system")
    lists = [system if type(system) is list else [], part.get("tools") or []]
    for turn in part.get("messages") or ():
        content = turn.get("content") if type(turn) is dict else None
        if type(content) is list:
            lists.append(content)
    return any(type(b) is dict and "cache_control" in b for blocks in lists for b in blocks)


def _blocks(part: dict[str, Any]) -> set[str]:
    """The content block types of the turns (tool_result contents included)."""
    seen: set[str] = set()
    for turn in part.get("messages") or ():
        content = turn.get("content") if type(turn) is dict else None
        for block in content if type(content) is list else ():
            if type(block) is dict:
                seen.add(str(block.get("type")))
                if block.get("is_error"):
                    seen.add("is_error")
                inner = block.get("content")
                if type(inner) is list:
                    seen.update(
                        f"tool_result:{b.get('type')}"
                        for b in inner
                        if type(b) is dict and b.get("type") != "text"
                    )
    return seen


_LOST: Final = {
    "redacted_thinking": "redacted_thinking blocks are not sent (only Anthropic can read them)",
    "is_error": "tool_result is_error is not sent (the result's text is)",
    "tool_result:image": "images inside a tool_result are not sent (its text is)",
    "tool_result:document": "documents inside a tool_result are not sent (its text is)",
    "search_result": "search_result blocks are not sent",
    "server_tool_use": "server tool blocks (server_tool_use, *_tool_result) are not sent",
}


def native_notes(request: dict[str, Any], kind: str) -> list[str]:
    """What of the Anthropic-native part a kind other than ``anthropic`` does not send."""
    part = native(request)
    if part is None:
        return []
    out = []
    if _cached(part):
        out.append(f"cache_control is not sent ({kind} caches prompts on its own terms, if at all)")
    if part.get("beta"):
        out.append(f"anthropic-beta {','.join(map(str, part['beta']))} is not sent (Anthropic only)")
    blocks = _blocks(part)
    out += [_LOST[b] for b in sorted(blocks) if _LOST.get(b)]
    if (
        any(b.endswith("_tool_result") and b != "tool_result" for b in blocks)
        and "server_tool_use" not in blocks
    ):
        out.append(_LOST["server_tool_use"])
    if any("signature" in b for t in part.get("messages") or () for b in _content(t)):
        out.append("thinking signatures are not sent (only Anthropic can verify them)")
    server = [t.get("name") or t.get("type") for t in part.get("tools") or () if _server_tool(t)]
    if server:
        out.append(f"Anthropic server tools are not sent: {', '.join(map(str, server))}")
    thinking = part.get("thinking")
    if type(thinking) is dict and thinking.get("type") in ("enabled", "adaptive"):
        out.append(f"thinking {thinking.get('type')} is not sent (only kind anthropic takes it)")
    given = part.get("extra") or {}
    # structured output travels as response_format: only output_config's other settings are lost
    config = given.get("output_config")
    carried = {"output_format"} | (
        {"output_config"} if type(config) is dict and set(config) <= {"format"} else set()
    )
    extra = sorted(k for k in given if k not in carried)
    if extra:
        out.append(f"not sent (Anthropic only): {', '.join(extra)}")
    return out


def _content(turn: Any) -> list[dict[str, Any]]:
    content = turn.get("content") if type(turn) is dict else None
    return (
        [b for b in content if type(b) is dict and b.get("type") == "thinking"]
        if type(content) is list
        else []
    )


def _server_tool(tool: Any) -> bool:
    return type(tool) is dict and tool.get("type", "custom") != "custom"
