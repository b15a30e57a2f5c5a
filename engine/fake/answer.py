"""A normalised chat request (``Chat``) plus its fault goes in; the deterministic ``Answer`` comes out.

The reply is a pure function of the request: ``"echo: " + last user text`` (or ``"tool result: ..."``
when the conversation ends with a tool result; the JSON of an object shaped by the schema, built
from that text, when the request asks for structured output), cut at a stop sequence, truncated
to ``max_tokens`` words, or a tool call (to the first offered tool, or the one
``tool_choice`` names, when it forces one or the user's text says "tool") with arguments shaped by
its schema. When the request enables thinking (or the model always reasons) the answer first thinks
``"thinking: " + that text``; thinking spends the ``max_tokens`` budget first, as it does at the
real APIs. Tokens are whitespace words, at least 1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine.fake.args import arguments
from engine.fake.faults import Fault

__all__ = ["Answer", "BadRequest", "Chat", "answer", "sign", "split", "words"]

_TOOL_WORD = re.compile(r"\btool\b", re.IGNORECASE)
_VOCAB = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


class BadRequest(Exception):
    """The request is not one its kind's API accepts: answered with ``status`` (400) in the kind's
    error shape; ``param`` and ``code`` fill the fields of that name where the shape has them."""

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


@dataclass(slots=True)
class Chat:
    """What every wire format's request is reduced to."""

    kind: str
    model: str
    stream: bool = False
    user_text: str = ""  # the last user message's text, ``[[fake: ...]]`` markers removed
    marker: str = ""  # the directives found in ``[[fake: ...]]`` markers of that message
    tool_result: str | None = None  # the text of a trailing tool result, if the chat ends with one
    prompt_tokens: int = 1
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()  # names of the tools offered (empty when tool_choice is none)
    schemas: dict[str, Any] = field(default_factory=dict)  # tool name -> its parameters schema
    output: dict[str, Any] | None = None  # structured output: the JSON schema the reply fits
    forced: str | None = None  # the tool_choice forces a call: of this tool, or "" (any of them)
    thinking: bool = False  # the request enables thinking, or the model always reasons
    show_thinking: bool = True  # the answer shows its thoughts (else they are only counted)
    include_usage: bool = False  # openai stream_options.include_usage
    sse: bool = True  # gemini: streamGenerateContent with alt=sse (else a streamed JSON array)
    opts: dict[str, Any] = field(default_factory=dict)  # wire-specific request settings


@dataclass(slots=True)
class Answer:
    """The reply, ready to be rendered in any wire format."""

    text: str
    finish: str  # "stop" | "length" | "stop_sequence" | "tool" | "pause_turn" | "refusal"
    input_tokens: int
    output_tokens: int
    stop_sequence: str | None = None
    tool_name: str | None = None
    tool_args: dict[str, Any] = field(default_factory=dict)
    tool_json: str = ""  # tool_args as JSON, as streamed
    pieces: list[str] = field(default_factory=list)  # stream chunks of ``text`` (or ``tool_json``)
    thinking: str = ""  # the thoughts before the reply ("" when the request does not think)
    thinking_tokens: int = 0  # not in ``output_tokens``: each wire adds them where its API does
    thinking_pieces: list[str] = field(default_factory=list)
    signature: str = ""  # anthropic/gemini: the opaque signature of the thoughts
    cached_tokens: int = 0  # prompt tokens read from the prompt cache (not in ``input_tokens``)
    cache_write_tokens: int = 0  # prompt tokens written to it (not in ``input_tokens`` either)

    @property
    def prompt_tokens(self) -> int:
        """The whole prompt: uncached input plus what was read from and written to the cache."""
        return self.input_tokens + self.cached_tokens + self.cache_write_tokens


_MARKER = re.compile(r"\[\[fake:([^\]]*)\]\]")


def strip_markers(text: str) -> tuple[str, str]:
    """Split ``[[fake: ...]]`` markers out of a user text: (clean text, directives)."""
    if "[[fake:" not in text:
        return text, ""
    found = _MARKER.findall(text)
    return _MARKER.sub("", text).strip(), " ".join(found)


def words(text: str) -> int:
    """The fake's token count: whitespace-separated words, at least 1."""
    return max(1, len(text.split()))


def split(text: str, n: int | None) -> list[str]:
    """Stream chunks whose concatenation is ``text``: one word each, or exactly ``n`` pieces."""
    if n is None:
        parts = text.split(" ")
        return [parts[0], *(" " + w for w in parts[1:])]
    size = len(text)
    return [text[i * size // n : (i + 1) * size // n] for i in range(n)]


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, str | None]:
    best: tuple[int, str] | None = None
    for seq in stop:
        at = text.find(seq) if seq else -1
        if at >= 0 and (best is None or at < best[0]):
            best = (at, seq)
    return (text, None) if best is None else (text[: best[0]], best[1])


def answer(chat: Chat, fault: Fault) -> Answer:
    """The deterministic reply to ``chat`` (``fault`` supplies ``tool``, ``words``, ``chunks`` and
    the cache counts)."""
    subject = chat.tool_result if chat.tool_result is not None else chat.user_text
    thought = ("thinking: " + subject).strip() if chat.thinking else ""
    tool = _tool_to_call(chat, fault)
    if tool is not None:
        return _finish(_tool_answer(chat, fault, tool), chat, fault, thought)
    text, seq = _cut_at_stop(_reply_text(chat, fault), chat.stop)
    finish = "stop" if seq is None else "stop_sequence"
    thought, text, finish, seq = _budgeted(chat.max_tokens, thought, text, finish, seq)
    if fault.stop_reason is not None and finish != "length":
        finish, seq = fault.stop_reason, None
    ans = Answer(
        text=text,
        finish=finish,
        input_tokens=chat.prompt_tokens,
        output_tokens=words(text) if text else 0,
        stop_sequence=seq,
        pieces=split(text, fault.chunks),
    )
    return _finish(ans, chat, fault, thought)


def _tool_answer(chat: Chat, fault: Fault, tool: str) -> Answer:
    """A call of ``tool``, its JSON arguments split into ``fault.chunks`` pieces (default: 16 bytes each)."""
    # a tool the request declared gets arguments of its schema; one it did not (tool=NAME),
    # the fake's own {"q": text}
    args = arguments(chat.schemas[tool], chat.user_text) if tool in chat.schemas else {"q": chat.user_text}
    raw = json.dumps(args)
    n = fault.chunks if fault.chunks is not None else max(1, (len(raw) + 15) // 16)
    return Answer(
        text="",
        finish="tool",
        input_tokens=chat.prompt_tokens,
        output_tokens=words(raw),
        tool_name=tool,
        tool_args=args,
        tool_json=raw,
        pieces=split(raw, n),
    )


def _reply_text(chat: Chat, fault: Fault) -> str:
    """The whole reply before any cut: ``fault.words`` words, the tool result, or the echo."""
    if fault.words is not None:
        return " ".join(_VOCAB[i % len(_VOCAB)] for i in range(fault.words))
    if chat.output is not None:  # structured output: JSON that fits the schema, as the APIs give
        subject = chat.tool_result if chat.tool_result is not None else chat.user_text
        return json.dumps(arguments(chat.output, subject))
    if chat.tool_result is not None:
        return "tool result: " + chat.tool_result
    return "echo: " + chat.user_text if chat.user_text else "echo:"


def _budgeted(
    max_tokens: int | None, thought: str, text: str, finish: str, seq: str | None
) -> tuple[str, str, str, str | None]:
    """Thought, text, finish and stop sequence within ``max_tokens`` (the thinking spends it first)."""
    budget = max_tokens if max_tokens is not None and max_tokens > 0 else None
    if thought and budget is not None:
        thought_words = thought.split()
        if len(thought_words) >= budget:  # the thinking used up the whole budget: no reply
            thought, text, finish, seq = " ".join(thought_words[:budget]), "", "length", None
        budget -= len(thought_words)
    if budget is not None and budget > 0:
        ws = text.split()
        if len(ws) > budget:
            text, finish, seq = " ".join(ws[:budget]), "length", None
    return thought, text, finish, seq


def _finish(ans: Answer, chat: Chat, fault: Fault, thought: str) -> Answer:
    """Add the thoughts and the prompt-cache counts to an answer."""
    if thought:
        ans.thinking, ans.thinking_tokens = thought, words(thought)
        ans.thinking_pieces = split(thought, None)
        ans.signature = sign(thought)
    ans.cached_tokens = fault.cached or 0
    ans.cache_write_tokens = fault.cache_write or 0
    return ans


def sign(thought: str) -> str:
    """The signature the fake gives these thoughts (base64, so SDKs that decode it can); a request
    that hands thoughts back with another signature is refused, as the real API does."""
    digest = hashlib.sha256(("fake-signature:" + thought).encode()).digest()
    return base64.b64encode(digest * 3).decode()


def _tool_to_call(chat: Chat, fault: Fault) -> str | None:
    if chat.tool_result is not None:  # after a tool result always answer in text (no agent loops)
        return None
    if fault.tool:  # tool=NAME calls that tool, offered or not
        return fault.tool
    if not chat.tools:
        return None
    if chat.forced is not None:  # required / any / a named tool: the APIs always call one
        return chat.forced if chat.forced in chat.tools else chat.tools[0]
    if fault.tool is not None or _TOOL_WORD.search(chat.user_text):
        return chat.tools[0]
    return None
