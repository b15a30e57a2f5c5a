"""OpenAI's shapes for the batch's output: a ``Response`` as a ``chat.completion`` object (the
same whatever provider answered), an error as OpenAI's error body and batch ``error``, and the
output line that carries either (``id``, ``custom_id``, ``response: {status_code, request_id,
body}``, ``error``).

The ``chat.completion`` object is the gateway's (``engine.gateway.openai.completion``), under the
name of the model that answered.
"""

from __future__ import annotations

import os
from typing import Any

from engine.errors import (
    AllTargetsFailed,
    DeadlineExceeded,
    NoRouteError,
    ProviderError,
    RequestError,
    RouteError,
)
from engine.gateway.openai import completion as chat_completion
from engine.result import Response

__all__ = ["answer_line", "completion", "error_kind", "failure_line", "status_of"]


def _hex() -> str:
    return os.urandom(12).hex()


def completion(response: Response) -> dict[str, Any]:
    """The ``chat.completion`` object of an answer, ``model`` the model that answered."""
    return chat_completion(response, response.model)


def status_of(error: RouteError | RequestError) -> tuple[int, str, str]:
    """(HTTP status, OpenAI error type, code) of an engine error, as the gateway answers it."""
    if isinstance(error, RequestError):
        return 400, "invalid_request_error", "invalid_request"
    if isinstance(error, NoRouteError):
        return 404, "invalid_request_error", "model_not_found"
    if isinstance(error, ProviderError):
        status = error.status or 502
        kind = "invalid_request_error" if 400 <= status < 500 else "upstream_error"
        return status, kind, "provider_error"
    if isinstance(error, DeadlineExceeded):
        return 504, "timeout_error", "deadline_exceeded"
    if isinstance(error, AllTargetsFailed):
        return 502, "upstream_error", "all_targets_failed"
    return 502, "upstream_error", "route_error"


def error_kind(error: RouteError | RequestError) -> str:
    """What went wrong, for the summary: the code, and the last attempt's kind when there is one
    (``all_targets_failed/status``)."""
    code = status_of(error)[2]
    attempts = error.attempts if isinstance(error, RouteError) else []
    last = attempts[-1].kind if attempts else None
    return f"{code}/{last}" if last else code


def answer_line(custom_id: str, response: Response) -> dict[str, Any]:
    """The output line of an answered request."""
    return {
        "id": "batch_req_" + _hex(),
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": "req_" + _hex(), "body": completion(response)},
        "error": None,
    }


def failure_line(custom_id: str, error: RouteError | RequestError) -> dict[str, Any]:
    """The output line of a request that got no answer: the error as OpenAI's error body under
    ``response`` and as the batch ``error`` (``code``, ``message``)."""
    status, kind, code = status_of(error)
    message = str(error)
    param = error.field if isinstance(error, RequestError) and error.field else None
    return {
        "id": "batch_req_" + _hex(),
        "custom_id": custom_id,
        "response": {
            "status_code": status,
            "request_id": "req_" + _hex(),
            "body": {"error": {"message": message, "type": kind, "param": param, "code": code}},
        },
        "error": {"code": code, "message": message},
    }
