"""engine init (engine.starter): a commented starter routes.yaml and a ci profile wired to the
fake provider's default address, never overwriting what is there unless forced."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.compiler import compile_file
from engine.fake.run import DEFAULT_HOST, DEFAULT_PORT


def test_init_writes_a_config_that_passes_check_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["init", str(tmp_path / "proj")]) == 0
    out = capsys.readouterr().out
    routes, ci = tmp_path / "proj" / "routes.yaml", tmp_path / "proj" / "profiles" / "ci.yaml"
    assert f"wrote {routes}" in out and f"wrote {ci}" in out
    assert routes.read_text().count("\n#") > 10  # it explains itself
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    # with the ci profile: no keys needed, no warning
    assert main(["check", str(routes), "--profile", "ci", "--strict"]) == 0
    # on its own: the only warnings say the API keys are not set; set, it passes --strict too
    assert main(["check", str(routes), "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.count("warning: api_key is empty") == 2 and "2 warnings" in err
    monkeypatch.setenv("OPENAI_API_KEY", "sk-1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-2")
    assert main(["check", str(routes), "--strict"]) == 0


def test_the_ci_profile_points_at_the_fakes_default_address(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path)]) == 0
    graph = compile_file(tmp_path / "routes.yaml", profile="ci")
    urls = {str(p.base_url) for p in graph.providers.values()}
    assert urls == {f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/v1"}
    assert (DEFAULT_HOST, DEFAULT_PORT) == ("127.0.0.1", 8400)  # what `engine fake` listens on


def test_the_demo_runs_on_a_fresh_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.fake import refused_port

    assert main(["init", str(tmp_path)]) == 0
    ci = tmp_path / "profiles" / "ci.yaml"  # (another port than 8400, free on this machine)
    ci.write_text(ci.read_text().replace(f":{DEFAULT_PORT}/", f":{refused_port()}/"))
    capsys.readouterr()
    assert main(["demo", str(tmp_path / "routes.yaml")]) == 0  # profiles/ci.yaml is picked up
    out = capsys.readouterr().out
    assert "answered by openai/gpt-4o-mini" in out
    assert "event: failover from openai/gpt-4o-mini" in out
    assert "from the response cache" in out


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "ci.yaml").write_text("mine\n")
    assert main(["init", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "ci.yaml exists; nothing written (--force overwrites)" in err
    assert not (tmp_path / "routes.yaml").exists()  # all or nothing
    assert (tmp_path / "profiles" / "ci.yaml").read_text() == "mine\n"
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "routes.yaml").exists()
    assert (tmp_path / "profiles" / "ci.yaml").read_text() != "mine\n"


def test_init_defaults_to_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert (tmp_path / "routes.yaml").is_file() and (tmp_path / "profiles" / "ci.yaml").is_file()


def test_license_is_mit_as_pyproject_says() -> None:
    root = Path(__file__).resolve().parent.parent
    text = (root / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c)" in text and "the engine authors" in text
    assert 'license = "MIT"' in (root / "pyproject.toml").read_text()
