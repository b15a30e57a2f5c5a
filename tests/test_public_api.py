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
                engine.ProviderError, engine.StreamInterrupted):
        assert issubclass(cls, engine.RouteError)
        assert issubclass(cls, engine.EngineError)
