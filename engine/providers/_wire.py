"""Helpers the four kinds share: checked access into decoded JSON, SSE framing, content parts.

Everything here turns a wrong shape into ``WireError`` (never KeyError/TypeError/IndexError), so
each kind's ``parse`` can stay a straight read of the documented response.
"""

from __future__ import annotations

import json
import uuid
from abc import abstractmethod
from typing import Any, NoReturn

from engine.providers.base import ERROR_TEXT_MAX, StreamParser, WireError, error_text, fast_loads, loads
from engine.result import NativeEvent, ReasoningDelta, StreamEvent, TextDelta, ToolCallDelta

__all__ = [
    "Deltas",
    "NDJSONParser",
    "SSEParser",
    "args_object",
    "as_dict",
    "as_list",
    "dump_args",
    "error_text",
    "fail",
    "image_url_of",
    "names",
    "new_call_id",
    "opt_dict",
    "opt_list",
    "opt_str",
    "parse_data_url",
    "stop_list",
    "text_of",
    "tokens",
]

Deltas = list[TextDelta | ReasoningDelta | ToolCallDelta | NativeEvent]

_loads = loads
_fast = fast_loads  # a plain stream event's JSON: what it refuses goes the long way, through loads


def fail(message: str) -> NoReturn:
    raise WireError(message)


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    fail(f"{what}: expected an object, got {_type(value)}")


def as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, list):
        return value
    fail(f"{what}: expected an array, got {_type(value)}")


def opt_list(value: Any, what: str) -> list[Any]:
    """An optional array: absent or null is empty."""
    return [] if value is None else as_list(value, what)


def opt_dict(value: Any, what: str) -> dict[str, Any]:
    """An optional object: absent or null is empty."""
    return {} if value is None else as_dict(value, what)


def opt_str(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    fail(f"{what}: expected a string, got {_type(value)}")


def tokens(data: dict[str, Any], key: str, what: str) -> int:
    """A token count: absent or null is 0; anything but a non-negative integer is malformed."""
    value = data.get(key)
    if value is None:
        return 0
    if type(value) is int and value >= 0:
        return value
    if type(value) is float and value.is_integer() and value >= 0:
        return int(value)
    fail(f"{what}.{key}: expected a token count, got {value!r}")


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def names(items: Any, key: str, what: str) -> list[str]:
    """The string ``key`` of every object in a listing array (entries without one are skipped)."""
    out = []
    for item in as_list(items, what):
        value = as_dict(item, f"{what}[]").get(key)
        if type(value) is str:
            out.append(value)
    return out


def dump_args(args: Any) -> str:
    """Tool-call arguments as the JSON text the OpenAI wire format carries."""
    return json.dumps(args, ensure_ascii=False, separators=(",", ":"))


def args_object(arguments: Any) -> dict[str, Any]:
    """OpenAI tool-call ``arguments`` (JSON text) as the object other wire formats want.

    Empty text is ``{}``. Text that is not a JSON object (models do emit broken JSON now and
    then) is kept, not dropped: ``{"arguments": <the text or value>}``.
    """
    if type(arguments) is dict:
        return arguments
    if arguments is None or arguments == "":
        return {}
    if type(arguments) is str:
        try:
            value = _loads(arguments)
        except ValueError:
            return {"arguments": arguments}
        return value if type(value) is dict else {"arguments": value}
    return {"arguments": arguments}


def new_call_id() -> str:
    """An id for a tool call whose provider gave none (Gemini, Ollama)."""
    return "call_" + uuid.uuid4().hex[:24]


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` -> ``("image/png", "AAAA")``; None if not a base64 data URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return head[:-7].split(";", 1)[0] or "application/octet-stream", data


def image_url_of(part: dict[str, Any]) -> str | None:
    """The URL of an OpenAI ``image_url`` part (the object form, or a bare string)."""
    image = part.get("image_url")
    if type(image) is dict:
        url = image.get("url")
        return url if type(url) is str else None
    return image if type(image) is str else None


def text_of(content: Any, sep: str = "\n") -> str:
    """Message content as plain text: a string as is, the text parts of a list joined."""
    if type(content) is str:
        return content
    if content is None:
        return ""
    if type(content) is list:
        return sep.join(
            p["text"]
            for p in content
            if type(p) is dict and p.get("type") == "text" and type(p.get("text")) is str
        )
    return str(content)


def stop_list(stop: Any) -> list[str] | None:
    """``stop`` as a list (OpenAI accepts a string or a list); None when absent or empty."""
    if stop is None or stop == "" or stop == []:
        return None
    if type(stop) is str:
        return [stop]
    return list(stop)


class SSEParser(StreamParser):
    """Server-sent events framing: ``data:`` lines carry JSON, everything else is framing.

    Each ``data:`` line is parsed at once (every provider here sends one JSON document per line);
    a line that does not parse alone is held and joined with the following ``data:`` lines of the
    same event, as the SSE spec allows. An event that still does not parse when it ends raises
    ``WireError`` as soon as anything else arrives; if nothing does, the body was cut inside it
    and ``done`` stays False. ``data: [DONE]`` (OpenAI) marks the end of the stream. An event
    named ``error`` (``event: error``, as OpenAI-compatible servers and Anthropic send) raises
    ``WireError`` with its message, whatever its data holds: JSON of any shape, or plain text.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []
        self._broken: str | None = None
        self._error = False  # this event is named "error"

    def feed(self, line: str) -> Deltas:
        line = line.rstrip("\r\n")
        if not line:
            if self._pending:
                text = "\n".join(self._pending)
                self._pending.clear()
                return self._data(text, last=True)
            self._error = False
            return []
        if line[0] == ":":  # comment / keep-alive
            return []
        field, _, value = line.partition(":")
        if field != "data":  # event:, id:, retry:
            if field == "event":
                self._error = value.strip() == "error"
            return []
        if self._broken is not None:
            fail(f"stream event is not JSON: {self._broken[:120]!r}")
        if value[:1] == " ":
            value = value[1:]
        if self._pending:
            self._pending.append(value)
            return []
        return self._data(value, last=False)

    def lines(self, lines: list[str]) -> tuple[list[StreamEvent], WireError | None]:
        """``feed`` of each line, with the lines of a plain event (one ``data: {...}`` line,
        an ``event:`` line, the blank line after it) read here, not fed one by one."""
        out: list[StreamEvent] = []
        event, feed, fast = self.event, self.feed, _fast
        plain = not self._pending and self._broken is None and not self._error
        try:
            for line in lines:
                if plain:
                    if line.startswith("data: {"):
                        try:
                            data = fast(line[6:])
                        except ValueError:  # (fed below: held, or read by the stdlib)
                            pass
                        else:
                            out += event(data)
                            continue
                    elif not line or (line.startswith("event:") and line[6:].strip() != "error"):
                        continue
                out += feed(line)
                plain = not self._pending and self._broken is None and not self._error
        except WireError as exc:
            return out, exc
        return out, None

    def _data(self, text: str, last: bool) -> Deltas:
        if text == "[DONE]":
            self.done = True
            return []
        try:
            data = _loads(text)
        except ValueError:
            if last:
                if self._error:  # an error event in plain text: its text is the message
                    fail(text.strip()[:ERROR_TEXT_MAX] or "error event")
                self._broken = text
            else:
                self._pending.append(text)
            return []
        if self._error:
            fail(error_text(data))
        if not isinstance(data, dict):
            fail(f"stream event: expected an object, got {_type(data)}")
        return self.event(data)

    @abstractmethod
    def event(self, data: dict[str, Any]) -> Deltas:
        """Handle one decoded event."""


class NDJSONParser(StreamParser):
    """Newline-delimited JSON framing: one JSON object per line, blank lines ignored.

    A line that does not parse is held: if the stream ends there it was cut mid-line (``done``
    stays False); if another line follows, it was garbage and ``WireError`` is raised.
    """

    def __init__(self) -> None:
        super().__init__()
        self._broken: str | None = None

    def feed(self, line: str) -> Deltas:
        line = line.strip()
        if not line:
            return []
        if self._broken is not None:
            fail(f"stream line is not JSON: {self._broken[:120]!r}")
        try:
            data = _loads(line)
        except ValueError:
            self._broken = line
            return []
        if not isinstance(data, dict):
            fail(f"stream line: expected an object, got {_type(data)}")
        return self.event(data)

    @abstractmethod
    def event(self, data: dict[str, Any]) -> Deltas:
        """Handle one decoded line."""
