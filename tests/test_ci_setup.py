""".ci/setup rebuilds a .venv that cannot serve: no python in it, a broken one, or one of another
minor version than $PYTHON (a stale checkout). Run against a stand-in interpreter that answers the
version probe, makes "venvs" of itself and logs what pip would install, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

STUB = """#!/usr/bin/env bash
here="$(cd "$(dirname "$0")" && pwd)"
case "$1" in
  -c) cat "$here/VERSION" ;;
  -m) case "$2" in
        venv) mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; cp "$here/VERSION" "$3/bin/VERSION"
              echo "venv $3" >> "$LOG" ;;
        pip) echo "pip ${*:3}" >> "$LOG" ;;
      esac ;;
esac
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "setup", tmp_path / ".ci" / "setup")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    py = tmp_path / "bin" / "python3"
    py.parent.mkdir()
    py.write_text(STUB)
    py.chmod(0o755)
    (py.parent / "VERSION").write_text("3.12\n")
    return tmp_path


def setup(project: Path) -> tuple[str, list[str]]:
    log = project / "log"
    log.write_text("")
    proc = subprocess.run(
        ["bash", ".ci/setup"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHON": str(project / "bin" / "python3"), "LOG": str(log)},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, log.read_text().splitlines()


def test_a_fresh_checkout_gets_a_venv_and_an_install(project: Path) -> None:
    out, log = setup(project)
    assert log[0] == "venv .venv" and any(line.startswith("pip install -q -e") for line in log)
    assert "rebuilding" not in out
    assert setup(project) == ("", [])  # done already: nothing to do


@pytest.mark.parametrize(
    ("spoil", "told"),
    [
        ("missing", "it has no working python"),
        ("broken", "it has no working python"),
        ("other minor", "it has 3.10"),
    ],
)
def test_a_venv_that_cannot_serve_is_rebuilt(project: Path, spoil: str, told: str) -> None:
    setup(project)
    venv_python = project / ".venv" / "bin" / "python"
    if spoil == "missing":
        venv_python.unlink()
    elif spoil == "broken":  # e.g. a symlink to an interpreter that was removed
        venv_python.unlink()
        venv_python.symlink_to(project / "no-such-python")
    else:
        (venv_python.parent / "VERSION").write_text("3.10\n")
    out, log = setup(project)
    assert told in out and "is 3.12" in out
    assert log[0] == "venv .venv" and any(line.startswith("pip install") for line in log)
    assert (venv_python.parent / "VERSION").read_text() == "3.12\n"
