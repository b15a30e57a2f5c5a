"""Fixtures of the gateway tests: ``served`` (one in-process gateway per module over the
session's fake provider), ``gateway`` (the same over the module's own ``CONFIG`` and ``KEYS``),
``key`` (the team key) and ``spawn`` (real ``engine serve`` subprocesses, stopped after the
test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import gwserve
import pytest
from gwserve import Served, Spawned

from engine.fake import FakeServer


@pytest.fixture(scope="module")
def served(fake_server: FakeServer) -> Iterator[Served]:
    """The module's gateway over ``gwserve.CONFIG`` and its client keys."""
    srv = Served(gwserve.CONFIG, fake_server, gwserve.KEYS)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def gateway(request: pytest.FixtureRequest, fake_server: FakeServer) -> Iterator[Served]:
    """The module's gateway over the ``CONFIG`` and client ``KEYS`` the test module defines."""
    srv = Served(request.module.CONFIG, fake_server, request.module.KEYS)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def key() -> str:
    return gwserve.KEYS["TEAM_KEY"]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Spawned]]:
    """``spawn(args, env={})``: an ``engine serve`` subprocess, stopped after the test."""
    started: list[Spawned] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Spawned:
        s = Spawned(args, env or {}, tmp_path)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
