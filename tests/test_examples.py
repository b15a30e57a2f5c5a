"""Every example in examples/ and the README's Python block run as a user would run them: in a
subprocess, against the fake provider (ENGINE_PROFILE=ci, ENGINE_FAKE_URL), with ResourceWarnings
shown — none may leave an "Unclosed" connector or session behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from engine.fake import FakeServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _env(fake: FakeServer, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in ("REDIS_URL", "ENGINE_PROFILE")
    }
    env.update(
        PYTHONPATH=str(ROOT),
        ENGINE_PROFILE="ci",
        ENGINE_FAKE_URL=fake.url,
        PYTHONWARNINGS="default",
        PYTHONDONTWRITEBYTECODE="1",
        **extra,
    )
    return env


def run(script: Path, *args: str, env: dict[str, str], cwd: Path = ROOT) -> str:
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Unclosed" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def test_quickstart(fake: FakeServer) -> None:
    out = run(EXAMPLES / "quickstart.py", env=_env(fake))
    assert "openai/gpt-4o-mini said 'echo: Hello!'" in out
    assert "attempt openai/gpt-4o-mini ok 200" in out
    assert "asked again: cached True, cost $0.00" in out
    assert "route    #2 [model=claude-*] -> anthropic" in out


def test_sync_script_closes_everything(fake: FakeServer) -> None:
    out = run(EXAMPLES / "sync_script.py", env=_env(fake))
    assert out.count("openai: echo: ") == 2
    assert "health: {'anthropic': 'closed', 'openai': 'closed'}" in out
    assert out.endswith("closed: no connection left open\n")


def test_streaming(fake: FakeServer) -> None:
    out = run(EXAMPLES / "streaming.py", env=_env(fake))
    assert out.startswith("echo: Tell me about streaming, word by word\n")
    assert re.search(r"-- openai/gpt-4o-mini: finish stop, \d+ tokens, first token after", out)


def test_rehearse_failover(fake: FakeServer) -> None:
    out = run(EXAMPLES / "rehearse_failover.py", env=_env(fake))
    first, second = out.split("-- second request")
    assert first.count("event: retry openai/gpt-4o-mini after 503") == 2
    assert "event: circuit openai is open" in first
    assert "event: failover from openai/gpt-4o-mini" in first
    assert "answered by anthropic/claude-3-5-haiku-latest" in first
    assert "attempt openai/gpt-4o-mini skipped circuit open" in second
    assert "answered by anthropic/claude-3-5-haiku-latest" in second
    assert "'openai': 'open'" in second
    assert fake.stats()["requests"] == 0  # the example reset the fake it programmed


def test_two_instances_share_the_cache_on_redis(fake: FakeServer, redis_url: str) -> None:
    # redis_url: an emptied Redis, so no circuit or answer another test left there for the
    # session's one fake (same endpoint identity) decides this run
    out = run(EXAMPLES / "two_instances_redis.py", redis_url, env=_env(fake))
    assert "instance one: 'echo: Shared between instances' from openai (cached False)" in out
    assert "instance two: 'echo: Shared between instances' (cached True: cached" in out
    chat = [r for r in fake.requests if r["path"].endswith("/chat/completions")]
    assert len(chat) == 1  # the second instance sent nothing upstream


def test_snapshot_test_in_a_users_repo(tmp_path: Path) -> None:
    # two copies of the user's repo, one with a config change, in one pytest run (a second
    # interpreter start costs more than the tests)
    same, changed = tmp_path / "same", tmp_path / "changed"
    for repo in (same, changed):
        shutil.copytree(EXAMPLES / "snapshot_test", repo)
    routes = changed / "routes.yaml"
    routes.write_text(routes.read_text().replace("read: 8s", "read: 9s"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            "--rootdir",
            str(tmp_path),
            "-W",
            "ignore::DeprecationWarning",
            "-rA",
            "same",
            "changed",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert re.findall(r"^PASSED same/tests/test_routes.py::test_routes\[(\w+)\]", out, re.M) == [
        "None",
        "production",
    ], out
    assert "2 failed, 2 passed" in out
    assert "FAILED changed/tests/test_routes.py::test_routes[None]" in out
    # the diff shows what the engine would now do differently
    assert "read=9s" in out and "read=8s" in out


def _readme_python() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## From Python\n", 1)[1]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m is not None, "the README's From Python section has no python block"
    return m.group(1)


def test_the_readme_python_block_runs_as_written(fake: FakeServer, tmp_path: Path) -> None:
    # the shipped routes.yaml and its ci profile, pointed at this test's fake instead of :8400
    shutil.copy(ROOT / "routes.yaml", tmp_path / "routes.yaml")
    (tmp_path / "profiles").mkdir()
    ci = (ROOT / "profiles" / "ci.yaml").read_text().replace("http://127.0.0.1:8400", fake.url)
    (tmp_path / "profiles" / "ci.yaml").write_text(ci)
    script = tmp_path / "readme_example.py"
    script.write_text(_readme_python())
    out = run(script, env=_env(fake), cwd=tmp_path)
    assert "echo: hi" in out
    assert "openai/gpt-4o-mini ok 200" in out  # the attempts
    assert "request  model=chat" in out  # the plan
    assert "circuit" in out  # health()
