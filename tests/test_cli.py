"""engine.cli beyond check/plan (tests/compile/test_compile_cli.py): ``--version``, ``engine fake``
documented like ``python -m engine.fake``, and a reader that closes the pipe early."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from engine.cli import BROKEN_PIPE, main
from engine.fake import faults

ROOT = Path(__file__).resolve().parent.parent


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"engine {version('engine')}\n"


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_engine_fake_help_is_the_fakes_own(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.fake import main as fake_main

    # a directive added to engine.fake.faults shows up in both (the list is not copied)
    monkeypatch.setitem(faults.DIRECTIVES, "brand_new=N", "a directive added after this test")
    ours = _help(["fake", "--help"], capsys)
    assert fake_main(["--help"]) == 0
    theirs = capsys.readouterr().out
    # the same text after the usage lines (whose wrapping depends on the program's name)
    assert ours.split("\n\n", 1)[1] == theirs.split("\n\n", 1)[1]
    for option in ("--host", "--port", "--require-key", "--chunk-delay"):
        assert option in ours
    for directive, meaning in faults.DIRECTIVES.items():
        assert f"  {directive}" in ours and meaning in ours
    for admin in ("POST /_fake/program", "POST /_fake/reset", "GET  /_fake/stats", "x-fake", "[[fake: 503]]"):
        assert admin in ours


def test_engine_fake_passes_every_option(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    monkeypatch.setattr("engine.fake.run.run", lambda args: seen.update(vars(args)) or 0)
    assert main(["fake", "--port", "0", "--require-key", "sk-1", "--chunk-delay", "0.5"]) == 0
    assert seen == {"host": "127.0.0.1", "port": 0, "require_key": "sk-1", "chunk_delay": 0.5}


def test_engine_fake_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fake", "--port", "many"]) == 2
    assert "engine fake: error: argument --port" in capsys.readouterr().err
    assert main(["check", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["plan", "--model", "chat", "--json"], ["schema"]])
def test_a_closed_pipe_ends_quietly(argv: list[str]) -> None:
    # `engine plan --json | head -1`: the reader is gone before (most of) the output is written
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "engine", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    finally:
        os.close(write)
    assert proc.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert proc.returncode == BROKEN_PIPE
