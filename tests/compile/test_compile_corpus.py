"""The invalid-config corpus: ``engine check`` on each file under ``invalid/`` exits 1 and prints only
located problems (``file:line:col: error: ...``), never a traceback. The exact stderr is snapshotted
so a change in wording or position shows up as a reviewable diff.

A file whose first line is ``# engine-args: ...`` passes those arguments too (``--profile``,
``--strict``). Templates and ``profiles/`` used by the corpus live beside it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from engine.cli import main

INVALID = Path(__file__).parent / "invalid"
CASES = sorted(INVALID.glob("*.yaml"))
LOCATED = re.compile(r"^[^\s:][^:]*:\d+:\d+: (error|warning): \S")
SUMMARY = re.compile(r"^(\d+ errors?|\d+ warnings? \(--strict\))$")
# the json module's own words and position for invalid JSON change between Python versions (3.13:
# "Illegal trailing comma before end of object" at the comma, before: "Expecting property name
# enclosed in double quotes" at the bracket); the snapshot keeps the engine's text and locations
JSON_DETAIL = re.compile(r"(does not render valid JSON: ).*? at output line \d+ column \d+")


def _args(path: Path) -> list[str]:
    first = path.read_text(encoding="utf-8").partition("\n")[0]
    return shlex.split(first.removeprefix("# engine-args:")) if first.startswith("# engine-args:") else []


def test_the_corpus_is_big_and_numbered() -> None:
    assert len(CASES) >= 40
    numbers = [p.name[:2] for p in CASES]
    assert all(n.isdigit() for n in numbers) and len(set(numbers)) == len(numbers)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_invalid_config(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], snapshot: object
) -> None:
    monkeypatch.chdir(INVALID)
    monkeypatch.delenv("ENGINE_PROFILE", raising=False)
    code = main(["check", path.name, *_args(path)])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert SUMMARY.match(lines[-1]), lines[-1]
    problems = [line for line in lines[:-1] if not line.startswith("    ")]
    assert problems
    for line in problems:
        assert LOCATED.match(line), f"not located: {line}"
    if "--strict" not in _args(path):
        assert any(": error: " in line for line in problems)
    assert JSON_DETAIL.sub(r"\1(the json module's message)", err) == snapshot
