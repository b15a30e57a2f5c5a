"""``engine batch`` in process over the fake: the output lines' shapes (answers and OpenAI's batch
errors), malformed input lines reported by number and skipped, duplicate ``custom_id``s refused
before anything is sent, the summary and exit codes, and the previous output's repair."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.batch.lines import read_input, read_previous
from engine.cli import main
from engine.fake import FakeServer

CONFIG = """\
version: 1
defaults: {{speed: t, breaker: none}}
speeds:
  t: {{connect: 1s, read: 5s, pool: 1s, retries: 0}}
providers:
  a: {{kind: anthropic, base_url: "{url}/a/v1", api_key: key-a,
      models: {{claude-3-5-haiku-latest: {{price: {{input: 0.8, output: 4.0}}}}}}}}
routes:
  - match: {{}}
    to: a/claude-3-5-haiku-latest
"""


def _line(cid: str, text: str, **body: Any) -> str:
    req = {"model": "chat", "messages": [{"role": "user", "content": text}], **body}
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": req})


@pytest.fixture
def here(fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "routes.yaml").write_text(CONFIG.format(url=fake.url))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(*extra: str) -> int:
    return main(["batch", "in.jsonl", "-o", "out.jsonl", "--no-progress", *extra])


def _out(here: Path) -> dict[str, dict[str, Any]]:
    return {d["custom_id"]: d for d in map(json.loads, (here / "out.jsonl").read_text().splitlines())}


def test_answers_in_openai_shape_whatever_provider_and_errors_as_batch_errors(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        _line("ok-1", "hello", max_tokens=20, stream=True),
        "not json at all",
        json.dumps({"custom_id": "x", "method": "GET", "url": "/v1/chat/completions", "body": {}}),
        _line("bad-2", "fails [[fake: 400]]"),
        _line("ok-3", "again"),
        "",
        json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {}}),
    ]
    (here / "in.jsonl").write_text("\n".join(lines) + "\n")
    assert _run() == 1  # not every line answered
    cap = capsys.readouterr()
    assert "in.jsonl:2: malformed line skipped: not JSON" in cap.err
    assert "in.jsonl:3: malformed line skipped: method must be POST" in cap.err
    assert "in.jsonl:7: malformed line skipped: url must be /v1/chat/completions" in cap.err
    out = _out(here)
    assert sorted(out) == ["bad-2", "ok-1", "ok-3"]
    ok = out["ok-1"]
    assert list(ok) == ["id", "custom_id", "response", "error"] and ok["error"] is None
    assert ok["id"].startswith("batch_req_") and ok["response"]["status_code"] == 200
    body = ok["response"]["body"]  # an Anthropic answer, in OpenAI's chat.completion shape
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "claude-3-5-haiku-latest"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert set(body["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    bad = out["bad-2"]
    assert bad["response"]["status_code"] == 400
    assert bad["response"]["body"]["error"]["code"] == "provider_error"
    assert bad["error"]["code"] == "provider_error" and bad["error"]["message"]
    assert "2 of 6 answered" in cap.out and "1 failed" in cap.out and "3 malformed lines" in cap.out
    assert "by provider: a 2" in cap.out and "failed by kind: provider_error/status 1" in cap.out


def test_a_duplicate_custom_id_stops_it_before_anything_is_sent(
    here: Path, fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "in.jsonl").write_text("\n".join([_line("a", "1"), _line("b", "2"), _line("a", "3")]) + "\n")
    assert _run() == 1
    assert "in.jsonl:3: duplicate custom_id 'a' (first on line 1)" in capsys.readouterr().err
    assert fake.requests == [] and not (here / "out.jsonl").exists()


def test_a_rerun_asks_only_what_is_missing_and_exits_0_when_complete(
    here: Path, fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "in.jsonl").write_text("\n".join(_line(f"r{i}", f"t{i}") for i in range(6)) + "\n")
    fake.program("/a/", ["ok", "503", "ok", "ok", "ok", "ok"])
    assert _run("-c", "1") == 1  # one failed
    capsys.readouterr()
    fake.reset()
    assert _run("--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["answered"], summary["answered_before"], summary["complete"]) == (1, 5, True)
    assert len(fake.requests) == 1  # only the failed one was asked again
    out = (here / "out.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["custom_id"] for x in out) == [f"r{i}" for i in range(6)]


def test_the_previous_output_is_repaired(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    good = json.dumps({"id": "1", "custom_id": "a", "response": {"status_code": 200}, "error": None})
    failed = json.dumps(
        {
            "id": "2",
            "custom_id": "b",
            "response": {"status_code": 502},
            "error": {"code": "x", "message": "y"},
        }
    )
    out.write_text(good + "\n" + failed + "\n" + good[:20])
    prev = read_previous(out)
    assert prev.answered == {"a"} and prev.failed == 1 and prev.torn
    assert out.read_text() == good + "\n"
    again = read_previous(out)
    assert not again.rewritten and again.answered == {"a"}


def test_read_input_numbers_every_problem(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join([_line("a", "x"), "[1]", json.dumps({"custom_id": "", "body": {}}), _line("a", "y")])
    )
    got = read_input(src)
    assert [i.custom_id for i in got.items] == ["a"] and "stream" not in got.items[0].body
    assert [n for n, _ in got.malformed] == [2, 3]
    assert got.duplicates == [(4, "a", 1)]
