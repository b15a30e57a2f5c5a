"""The package's public surface: a sorted ``__all__`` whose every name imports."""

import engine


def test_all_is_sorted_and_importable() -> None:
    assert engine.__all__ == sorted(engine.__all__)
    for name in engine.__all__:
        assert getattr(engine, name) is not None


def test_error_tree() -> None:
    assert issubclass(engine.ConfigError, engine.EngineError)
    assert issubclass(engine.RequestError, engine.EngineError)
    assert not issubclass(engine.RequestError, engine.RouteError)
    for cls in (engine.NoRouteError, engine.AllTargetsFailed, engine.DeadlineExceeded,
                engine.ProviderError, engine.StreamInterrupted, engine.ListingError):
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
        engine.ListingError.of("a", "a: model listing answered HTTP 401: no", "status", "no",
                               status=401),
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
