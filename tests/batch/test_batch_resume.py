"""``engine batch`` loses nothing: a 1,000-line batch over the fake with injected faults, its process
killed (SIGKILL) in the middle, then run again with the same output to completion, answers every
``custom_id`` exactly once (a torn last line, as a kill inside a write would leave, is repaired)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.fake import FakeServer

ROOT = Path(__file__).resolve().parents[2]
N = 1000

CONFIG = """\
version: 1
defaults: {{speed: t, breaker: none, deadline: 20s}}
speeds:
  t: {{connect: 1s, read: 30s, pool: 5s, retries: 2, backoff: {{base: 1ms, max: 2ms}}}}
providers:
  a: {{kind: openai, base_url: "{url}/a/v1", api_key: key-a,
      models: {{m: {{price: {{input: 1, output: 2}}}}}}}}
  b: {{kind: anthropic, base_url: "{url}/b/v1", api_key: key-b, models: {{claude: {{}}}}}}
  c: {{kind: gemini, base_url: "{url}/c", api_key: key-c, models: {{gemini-2.0-flash: {{}}}}}}
groups:
  g: {{strategy: priority, targets: [a/m, b/claude, c/gemini-2.0-flash]}}
routes:
  - match: {{}}
    to: g
"""


def _input(path: Path) -> None:
    with path.open("w") as f:
        for i in range(N):
            body = {"model": "chat", "messages": [{"role": "user", "content": f"question {i}"}]}
            f.write(
                json.dumps(
                    {"custom_id": f"q-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
                )
            )
            f.write("\n")


def _batch(tmp: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "engine",
        "batch",
        "in.jsonl",
        "-o",
        "out.jsonl",
        "-f",
        "routes.yaml",
        "-c",
        "8",
    ]
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line] if path.exists() else []


def test_a_killed_batch_reruns_to_every_answer_exactly_once(fake: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(CONFIG.format(url=fake.url))
    _input(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    # the first run: faults among the first tries, then every request hangs, so it is
    # certainly mid-batch when killed
    faults = ["503", "ok", "ok", "reset", "ok", "ok", "500", "ok", "ok", "ok"] * 50
    fake.program(None, [*faults, *["latency=60s"] * 50])
    proc = _batch(tmp_path)
    try:
        end = time.monotonic() + 60
        while len(_lines(out)) < 300 and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.02)  # watching another process's file: nothing to wait on
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    first = _lines(out)
    assert 300 <= len(first) < N
    with out.open("ab") as f:  # what a kill inside a write would leave: half a line
        f.write(first[-1][: len(first[-1]) // 2])

    fake.reset()
    fake.program(None, ["503", "reset", "500"], rate=0.1, seed=5)  # faults the failover absorbs
    proc = _batch(tmp_path)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "a torn last line" in stderr
    lines = [json.loads(line) for line in _lines(out)]
    ids = [line["custom_id"] for line in lines]
    assert len(ids) == N and set(ids) == {f"q-{i}" for i in range(N)}  # each exactly once
    assert all(line["response"]["status_code"] == 200 and line["error"] is None for line in lines)
    for line in lines:
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"].endswith("question " + line["custom_id"][2:])
    before = len({json.loads(x)["custom_id"] for x in first if _ok(x)})  # the torn copy is gone
    assert f"{N} of {N} answered ({N - before} now, {before} before), 0 failed" in stdout


def _ok(raw: bytes) -> bool:
    data = json.loads(raw)
    return bool(data["error"] is None and data["response"]["status_code"] == 200)
