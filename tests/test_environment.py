"""The suite runs in a clean environment (tests/conftest.py): none of the variables the engine,
the shipped configs or the SDKs read survive from the developer's shell."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EnvNames = Callable[[Iterable[str]], list[str]]


def _interpolated() -> set[str]:
    """Every ``${NAME}`` in the shipped configs, profiles, examples and starter templates."""
    files = [
        ROOT / "routes.yaml",
        *ROOT.glob("profiles/*.yaml"),
        *ROOT.glob("examples/**/*.yaml"),
        *ROOT.glob("examples/*.py"),
        *(ROOT / "engine").glob("starter*.py"),
    ]
    return {m for f in files for m in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", f.read_text("utf-8"))}


def test_every_variable_the_shipped_configs_read_is_cleaned(env_names_read: EnvNames) -> None:
    names = _interpolated()
    assert {"OPENAI_API_KEY", "REDIS_URL", "ENGINE_FAKE_URL"} <= names  # the scan finds them
    assert sorted(names - set(env_names_read(names))) == []


def test_the_engine_settings_and_proxies_are_cleaned(env_names_read: EnvNames) -> None:
    read = ["ENGINE_PROFILE", "REDIS_URL", "GROQ_API_KEY", "OPENAI_BASE_URL", "https_proxy", "GOOGLE_API_KEY"]
    kept = ["PATH", "HOME", "PYTHONPATH", "REDIS_PORT_X", "MY_ENGINE"]
    assert env_names_read(read + kept) == read


def test_none_is_set_in_this_session(env_names_read: EnvNames) -> None:
    assert env_names_read(os.environ) == []


def test_a_test_may_still_set_one(monkeypatch: pytest.MonkeyPatch, env_names_read: EnvNames) -> None:
    monkeypatch.setenv("ENGINE_PROFILE", "ci")
    assert env_names_read(os.environ) == ["ENGINE_PROFILE"]
