"""Does a request fit a model's context window: the estimate before anything is sent (a target
whose model declares ``context`` too small is skipped at no network cost), and a provider's own
"context length exceeded" error read after (classified as the error kind ``context``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from engine.estimate import prompt_tokens

__all__ = ["needed_tokens", "overflow", "said_too_long"]

# The wording of the providers' own errors (OpenAI and the OpenAI-compatible servers: code
# ``context_length_exceeded``, "This model's maximum context length is N tokens"; Anthropic:
# "prompt is too long: N tokens > M maximum"; Gemini: "The input token count (N) exceeds the
# maximum number of tokens allowed (M)"; Ollama: "the input length exceeds the context length").
_TOO_LONG: Final = re.compile(
    r"context[_ ]length[_ ]exceeded|maximum context length|prompt is too long"
    r"|exceeds the maximum number of tokens|exceeds the context (?:length|window)"
    r"|input length exceeds|context window (?:is )?exceeded",
    re.IGNORECASE,
)


def needed_tokens(request: Mapping[str, Any]) -> int:
    """The window a request needs: its estimated input tokens (text characters / 4, as the rate
    limiter counts) plus its ``max_tokens`` (nothing when it sets none)."""
    out = request.get("max_tokens")
    return prompt_tokens(request) + (out if isinstance(out, int) and out > 0 else 0)


def overflow(needed: int, context: int | None) -> str | None:
    """Why a request needing ``needed`` tokens does not fit a window of ``context`` tokens (the
    attempt's detail), or ``None`` when it fits or the model declares no window."""
    if context is None or needed <= context:
        return None
    return f"needs ~{needed} tokens (input + max_tokens), the model's context holds {context}"


def said_too_long(status: int | None, detail: str) -> bool:
    """Whether an error answer (a 4xx, its message) is the provider saying the request does not
    fit the model's context window."""
    return status is not None and 400 <= status < 500 and _TOO_LONG.search(detail) is not None
