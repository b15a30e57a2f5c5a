"""The package's public surface: a sorted ``__all__`` whose every name imports, and in it every
type a caller receives."""

from typing import Any

import engine


def test_all_is_sorted_and_importable() -> None:
    assert engine.__all__ == sorted(engine.__all__)
    for name in engine.__all__:
        assert getattr(engine, name) is not None
    assert set(engine._LAZY) <= set(engine.__all__)  # nothing loads lazily that is not public
    assert sorted(n for n in engine.__all__ if n not in dir(engine)) == []


def test_error_tree() -> None:
    assert issubclass(engine.ConfigError, engine.EngineError)
    assert issubclass(engine.RequestError, engine.EngineError)
    assert not issubclass(engine.RequestError, engine.RouteError)
    for cls in (
        engine.NoRouteError,
        engine.AllTargetsFailed,
        engine.DeadlineExceeded,
        engine.ProviderError,
        engine.StreamInterrupted,
        engine.ListingError,
    ):
        assert issubclass(cls, engine.RouteError)
        assert issubclass(cls, engine.EngineError)


def _errors() -> list[engine.EngineError]:
    attempt = engine.Attempt("a/m", "failover", 503, "status: overloaded", 0.012)
    return [
        engine.ConfigError([engine.Problem("routes.yaml", 3, 5, "providers.a", "bad", "fix")]),
        engine.RequestError("messages[0].role", "unknown role 'robot'"),
        engine.NoRouteError("no route matches model 'x'"),
        engine.AllTargetsFailed("every target failed on route 0 (*)", [attempt], route="route 0"),
        engine.DeadlineExceeded("deadline 5s exceeded", [attempt]),
        engine.ProviderError("a/m answered 400", [attempt], status=400, body="bad"),
        engine.StreamInterrupted("broke", [attempt], received="hel"),
        engine.ListingError.of("a", "a: model listing answered HTTP 401: no", "status", "no", status=401),
    ]


def test_every_error_pickles_and_copies_with_its_fields() -> None:
    import copy
    import pickle

    for err in _errors():
        for again in (pickle.loads(pickle.dumps(err)), copy.copy(err), copy.deepcopy(err)):
            assert type(again) is type(err)
            assert str(again) == str(err)
            assert vars(again) == vars(err)


def test_a_route_error_is_one_line_with_its_attempts_as_notes() -> None:
    import traceback

    err = _errors()[3]
    assert isinstance(err, engine.AllTargetsFailed)
    assert str(err) == "every target failed on route 0 (*)" == err.message
    assert err.__notes__ == ["  - a/m failover 503 status: overloaded 12.0ms"]
    assert err.describe() == "every target failed on route 0 (*)\n" + err.__notes__[0]
    shown = "".join(traceback.format_exception(err))
    assert "a/m failover 503 status: overloaded" in shown


# -- every type a caller receives is exported ------------------------------------------------------


def _received() -> set[type]:
    """Classes of engine reachable from what ``Engine`` and ``EventStream`` return, the events
    ``Engine.on`` delivers and the errors, through type hints: dataclass fields, the return types
    of public methods and properties. The graph is its own API (``engine.graph``): not entered."""
    import dataclasses
    import inspect
    import sys
    import typing

    from engine.graph import RoutingGraph
    from engine.runtime.events import Event

    exported = {n: getattr(engine, n) for n in engine.__all__}

    def hints(obj: Any) -> dict[str, Any]:
        # names a module imports only for type checking resolve through the exports: a received
        # type imported that way and not exported fails here with its name
        module = sys.modules[obj.__module__]
        return typing.get_type_hints(obj, {**vars(module), **exported})

    seen: set[type] = set()
    todo: list[object] = [
        engine.Engine,
        Event,
        *(getattr(engine, n) for n in engine.__all__ if n.endswith("Error")),
    ]
    while todo:
        hint = todo.pop()
        if typing.get_args(hint):
            todo += typing.get_args(hint)
            continue
        if not isinstance(hint, type) or hint in seen or not hint.__module__.startswith("engine"):
            continue
        seen.add(hint)
        if hint is RoutingGraph:
            continue
        if dataclasses.is_dataclass(hint):
            todo += hints(hint).values()
        for name, member in inspect.getmembers(hint):
            fn = getattr(member, "fget", member)
            public = not name.startswith("_") or name in ("__aiter__", "__anext__")
            if (
                public
                and callable(fn)
                and not isinstance(fn, type)
                and getattr(fn, "__module__", "").startswith("engine")
            ):
                todo.append(hints(fn).get("return"))
    return seen


def test_every_type_a_caller_receives_is_exported() -> None:
    received = _received()
    assert {
        engine.EventStream,
        engine.ProviderHealth,
        engine.ModelListing,
        engine.Plan,
        engine.PlanTarget,
        engine.AttemptEnded,
        engine.Response,
        engine.Usage,
    } <= received
    missing = sorted(
        c.__name__
        for c in received
        if c.__name__ not in engine.__all__ or getattr(engine, c.__name__) is not c
    )
    assert missing == []


def test_the_plan_parts_and_event_classes_are_all_exported() -> None:
    import engine.plan
    import engine.runtime.events

    assert {n for n in engine.plan.__all__ if n.startswith("Plan")} <= set(engine.__all__)
    events = {n for n in engine.runtime.events.__all__ if n not in ("EVENT_NAMES", "Hooks")}
    assert events <= set(engine.__all__)
    assert set(typing_args(engine.StreamEvent)) == {
        engine.TextDelta,
        engine.ReasoningDelta,
        engine.ToolCallDelta,
        engine.NativeEvent,
        engine.Done,
    }


def typing_args(hint: object) -> tuple[object, ...]:
    import typing

    return typing.get_args(hint)


def test_import_engine_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, engine\n"
        "print(sorted(m for m in sys.modules if m.startswith(('engine.', 'pydantic', 'aiohttp',"
        " 'httpx', 'redis', 'jinja2', 'ruamel'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['engine.errors', 'engine.result']", out.stdout
