"""engine.cli: check / plan / schema / graph through ``main([...])``. Exit codes: 0 ok, 1 config
errors, 2 usage; bad input never shows a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main

ROOT = Path(__file__).parents[2]


@pytest.fixture
def routes(cfg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ENGINE_PROFILE", raising=False)
    for name, value in cfg.env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "routes.yaml"
    path.write_text(cfg.text)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_check_ok(routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "check", str(routes))
    assert code == 0 and err == ""
    assert out.endswith(": ok (3 providers, 2 groups, 4 routes; 0 warnings)\n")


def test_check_quiet(routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "check", str(routes), "-q") == (0, "", "")


def test_check_defaults_to_routes_yaml_in_cwd(
    routes: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(routes.parent)
    code, out, _ = _run(capsys, "check")
    assert code == 0 and out.startswith("routes.yaml: ok")


def test_check_errors_exit_1_with_located_messages(
    cfg: Any, routes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes.write_text(cfg.replace("    speed: quick\n", "    speed: quikc\n"))
    code, out, err = _run(capsys, "check", str(routes))
    assert code == 1 and out == ""
    line = cfg.line_of(cfg.text, "speed: quick")
    assert (
        f"routes.yaml:{line}:12: error: unknown speed 'quikc' in providers.openai.speed "
        "(did you mean 'quick'?)" in err
    )
    assert "        speed: quikc\n               ^\n" in err  # the source line and a caret
    assert err.endswith("1 error\n")


def test_check_warnings_pass_unless_strict(
    cfg: Any, routes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes.write_text(cfg.replace("  local:\n", "  spare: {kind: ollama}\n  local:\n"))
    code, out, err = _run(capsys, "check", str(routes))
    assert code == 0 and "1 warning)" in out and ": warning: provider 'spare'" in err
    code, _, err = _run(capsys, "check", str(routes), "--strict")
    assert code == 1 and "1 warning (--strict)" in err


def test_check_shipped_config_and_profiles(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ENGINE_PROFILE", raising=False)
    monkeypatch.chdir(ROOT)
    for profile in ([], ["--profile", "ci"], ["--profile", "local"], ["--profile", "production"]):
        code, out, _ = _run(capsys, "check", "routes.yaml", *profile)
        assert code == 0 and ": ok (" in out


def test_profile_from_environment(
    routes: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (routes.parent / "profiles").mkdir()
    (routes.parent / "profiles" / "tight.yaml").write_text("defaults: {deadline: 1s}\n")
    monkeypatch.setenv("ENGINE_PROFILE", "tight")
    code, out, err = _run(capsys, "check", str(routes))
    assert code == 0 and "warnings)" in out and "exceeds the deadline 1s" in err


def test_missing_profile(routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (routes.parent / "profiles").mkdir()
    (routes.parent / "profiles" / "ci.yaml").write_text("{}\n")
    code, _, err = _run(capsys, "check", str(routes), "--profile", "nope")
    assert code == 1 and "profile 'nope' not found (available profiles: ci)" in err


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00bad", b"version: 1\n\x00\x01", b"[" * 700, b"a: *nope\n", b"%YAML 9.9\n---\na: 1\n"],
)
def test_garbage_files_exit_1_without_traceback(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_bytes(content)
    code, out, err = _run(capsys, "check", str(path))
    assert code == 1 and out == "" and "error:" in err


def test_missing_file_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "check", str(tmp_path / "nope.yaml"))
    assert code == 1 and "file not found" in err
    code, _, err = _run(capsys, "check", str(tmp_path))
    assert code == 1 and "cannot read file" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["check", "--bogus"],
        ["plan", "--temperature", "hot"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "usage:" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0 and "check" in out and "plan" in out


def test_plan_usage_errors_exit_2(routes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "plan", str(routes))[0] == 2  # no model
    assert _run(capsys, "plan", str(routes), "-m", "chat", "--metadata", "novalue")[0] == 2
    assert _run(capsys, "plan", str(routes), "-r", str(tmp_path / "missing.json"))[0] == 2
    bad = tmp_path / "bad.json"
    for content in ("{not json", "[1, 2]", '{"model": "chat", "messages": "hi"}', '{"model": 5}'):
        bad.write_text(content)
        code, _, err = _run(capsys, "plan", str(routes), "-r", str(bad))
        assert code == 2 and err.startswith("engine: error:"), content


@pytest.mark.parametrize(
    ("content", "argv", "field"),
    [
        ('{"model": "chat", "temperature": NaN}', [], "temperature"),
        ('{"model": "chat", "messages": [{"role": "robot", "content": "hi"}]}', [], "messages[0].role"),
        ('{"model": "chat", "metadata": ["tier"]}', ["--metadata", "tier=free"], "metadata"),
        ('{"model": "chat", "max_tokens": "64"}', ["--temperature", "nan"], "max_tokens"),
    ],
)
def test_plan_a_bad_request_is_one_line_naming_the_field_and_exits_2(
    routes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    argv: list[str],
    field: str,
) -> None:
    path = tmp_path / "request.json"
    path.write_text(content)
    code, out, err = _run(capsys, "plan", str(routes), "-r", str(path), *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"engine: error: {path}: bad request: {field}: ")
    assert err.count("\n") == 1, err
    code, _, err = _run(capsys, "plan", str(routes), "-m", "chat", "--temperature", "nan")
    assert code == 2 and err.startswith("engine: error: bad request: temperature: ")


def test_plan_metadata_flags_join_the_request_files(
    routes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "request.json"
    for meta in (None, {"user": "ann"}):
        path.write_text(json.dumps({"model": "x", "metadata": meta}))
        code, out, _ = _run(capsys, "plan", str(routes), "-r", str(path), "--metadata", "tier=free", "--json")
        assert code == 0
        assert "tier" in json.loads(out)["request"]["metadata"]


def test_plan_no_route_exits_1(cfg: Any, routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes.write_text(cfg.replace("  - match: {}\n    to: chat\n", ""))
    code, _, err = _run(capsys, "plan", str(routes), "-m", "nothing")
    assert code == 1 and "no route" in err


def test_plan_on_a_broken_config_exits_1(cfg: Any, routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes.write_text(cfg.replace("    to: mix\n", "    to: mxi\n"))
    code, out, err = _run(capsys, "plan", str(routes), "-m", "chat")
    assert code == 1 and out == "" and "unknown provider or group 'mxi'" in err


def test_plan_text_and_json(routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "plan", str(routes), "-m", "chat", "--metadata", "tier=free")
    assert code == 0 and out.startswith("request  model=chat metadata=tier\nroute    #0")
    code, out, _ = _run(capsys, "plan", str(routes), "-m", "x", "--metadata", "tier=free", "--json")
    assert code == 0 and json.loads(out)["route"]["to"] == "mix"


def test_plan_without_any_api_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("ENGINE_PROFILE", raising=False)
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "TOGETHER_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    code, out, _ = _run(capsys, "plan", "--model", "chat")
    assert code == 0 and "route    #0 [model=chat] -> chat" in out


def test_graph(routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "graph", str(routes))
    assert code == 0 and out.startswith("flowchart LR\n")
    code, out, _ = _run(capsys, "graph", str(routes.parent / "missing.yaml"))
    assert code == 1 and out == ""


def test_python_dash_m_engine_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "check", "-q", "routes.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_counts_are_singular_when_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "version: 1\nproviders:\n  p: {kind: openai, api_key: k}\n"
        "groups:\n  g: {targets: [p]}\nroutes:\n  - to: g\n"
    )
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out.endswith(": ok (1 provider, 1 group, 1 route; 0 warnings)\n")


N = 40_000  # ruamel's C composer overflowed the C stack (a segfault) at some 20,000-40,000 levels


@pytest.mark.parametrize(
    "text, line, col",
    [
        ("version: 1\nproviders: " + "[" * N + "]" * N + "\n", 2, 61),
        ("version: 1\nproviders: " + "{a: " * N + "1" + "}" * N + "\n", 2, 208),
        ("version: 1\nroutes:\n  " + "- " * N + "to: x\n", 3, 101),
    ],
    ids=["flow sequence", "flow mapping", "block sequence"],
)
def test_check_of_a_config_nested_40000_deep_exits_1_not_with_a_segfault(
    text: str, line: int, col: int, tmp_path: Path
) -> None:
    (tmp_path / "deep.yaml").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "check", str(tmp_path / "deep.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])  # -11 was the segfault
    assert f"deep.yaml:{line}:{col}: error: the document nests more than 50 levels deep here" in proc.stderr
    assert "Traceback" not in proc.stderr
