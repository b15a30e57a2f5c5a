"""The error tree, and located problems found while reading a configuration.

```
EngineError
├─ ConfigError(problems)      every problem found in one pass, each located
├─ RequestError(field)        a request of the wrong shape, refused before any network call
└─ RouteError(attempts)
   ├─ NoRouteError            no route matched the request
   ├─ AllTargetsFailed        every attempt, in order
   ├─ DeadlineExceeded        the route's deadline ran out
   ├─ ProviderError           a non-failover client error (e.g. 400), with its attempt
   │  └─ ListingError         a model listing that could not be fetched or read
   └─ StreamInterrupted       a stream broke after its first event; carries what was received
```
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.result import Attempt, ErrorKind

__all__ = [
    "AllTargetsFailed",
    "ConfigError",
    "DeadlineExceeded",
    "EngineError",
    "ListingError",
    "NoRouteError",
    "Problem",
    "ProviderError",
    "RequestError",
    "RouteError",
    "StreamInterrupted",
]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One located finding. ``path`` is the dotted key path (``groups.chat.targets[1]``)."""

    file: str
    line: int  # 1-based; 0 when unknown
    col: int  # 1-based; 0 when unknown
    path: str
    message: str
    hint: str = ""
    severity: Severity = "error"
    snippet: str = ""  # the source line, for the caret display

    def format(self, *, show_source: bool = True) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.col}" if self.col else f":{self.line}"
        text = f"{where}: {self.severity}: "
        text += f"{self.message} in {self.path}" if self.path else self.message
        if self.hint:
            text += f" ({self.hint})"
        if show_source and self.snippet and self.col:
            text += f"\n    {self.snippet}\n    {' ' * (self.col - 1)}^"
        return text

    def __str__(self) -> str:
        return self.format(show_source=False)


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Stable, human order: by file, then position, then path."""
    return sorted(problems, key=lambda p: (p.file, p.line, p.col, p.path, p.message))


class EngineError(Exception):
    """Base class of every error this package raises on purpose. Every one pickles and copies
    with its fields (for multiprocessing, task queues and ``copy.copy``)."""

    def __reduce__(self) -> tuple[Any, ...]:
        # the default calls ``type(self)(*self.args)``, which the subclasses' own signatures
        # (problems, attempts, field and reason) refuse: rebuild without calling __init__
        return _restore, (type(self), self.args, dict(self.__dict__))


def _restore(cls: type[EngineError], args: tuple[Any, ...], state: dict[str, Any]) -> EngineError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(EngineError):
    """A configuration could not be compiled. ``problems`` lists every error (and warning) found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sort_problems(problems))
        errors = [p for p in self.problems if p.severity == "error"]
        head = f"{len(errors)} configuration error{'s' if len(errors) != 1 else ''}"
        super().__init__(head + "\n" + "\n".join(p.format(show_source=False) for p in self.problems))

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


class RequestError(EngineError, ValueError):
    """A request the engine refuses before sending anything: ``field`` is the dotted path of the
    bad value (``messages[2].role``; empty for the request itself) and ``reason`` what is wrong.

    Also a ``ValueError``, as pydantic's ``ValidationError`` (raised for some bad requests before
    this existed) is, so code catching that keeps working.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"bad request: {field}: {reason}" if field else f"bad request: {reason}")


class RouteError(EngineError):
    """A request could not be answered. ``attempts`` lists every try, in order.

    ``str(error)`` is the one-line message; the attempts are notes (shown under a traceback, one
    line each) and ``describe()`` gives both as text.
    """

    def __init__(self, message: str, attempts: Sequence[Attempt] = (), *, route: str = "") -> None:
        self.attempts: tuple[Attempt, ...] = tuple(attempts)
        self.route = route
        super().__init__(message)
        for a in self.attempts:
            self.add_note(f"  - {a}")

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def describe(self) -> str:
        """The message and one line per attempt."""
        return "\n".join([self.message, *(f"  - {a}" for a in self.attempts)])


class NoRouteError(RouteError):
    """No route matched the request."""


class AllTargetsFailed(RouteError):
    """Every reachable target failed (or was skipped)."""


class DeadlineExceeded(RouteError):
    """The route's deadline ran out before any target answered."""


class ProviderError(RouteError):
    """A provider answered with an error that neither retries nor fails over (e.g. 400)."""

    def __init__(
        self,
        message: str,
        attempts: Sequence[Attempt] = (),
        *,
        status: int | None = None,
        body: str = "",
        route: str = "",
    ) -> None:
        self.status = status
        self.body = body
        super().__init__(message, attempts, route=route)


class ListingError(ProviderError):
    """A provider's model listing could not be fetched or read (``Engine.list_models``).

    ``provider`` names it; ``status`` is the HTTP status when one came; ``attempts`` holds the
    one GET, its ``kind`` (timeout, connect, reset, protocol, status, closed) and ``detail``;
    ``body`` is the detail as it always was. Nothing in it holds the URL or a secret. A
    ``ProviderError``, as listing failures were before it existed.
    """

    def __init__(
        self,
        message: str,
        attempts: Sequence[Attempt] = (),
        *,
        provider: str = "",
        status: int | None = None,
        body: str = "",
    ) -> None:
        self.provider = provider
        super().__init__(message, attempts, status=status, body=body)

    @classmethod
    def of(
        cls,
        provider: str,
        message: str,
        kind: ErrorKind,
        detail: str,
        *,
        status: int | None = None,
        body: str | None = None,
        latency: float = 0.0,
    ) -> ListingError:
        """The error of one failed listing GET (``detail`` already masked of secrets)."""
        attempt = Attempt(provider, "fatal", status, latency=latency, kind=kind, detail=detail)
        return cls(
            message, [attempt], provider=provider, status=status, body=detail if body is None else body
        )


class StreamInterrupted(RouteError):
    """A stream broke after events were already yielded; failover is no longer allowed.

    ``received`` is the text received before the break.
    """

    def __init__(
        self, message: str, attempts: Sequence[Attempt] = (), *, received: str = "", route: str = ""
    ) -> None:
        self.received = received
        super().__init__(message, attempts, route=route)
