"""``engine bench`` over the fake: each target measured alone (no failover, no retries: exactly N
requests reach each), its figures in the table and the JSON (latency percentiles, TTFT when
streamed, tokens/s, errors by kind, cost), and the plot (or its graceful absence)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from engine.cli import main
from engine.fake import FakeServer

CONFIG = """\
version: 1
defaults: {{speed: t, breaker: standard}}
speeds:
  t: {{connect: 1s, read: 5s, pool: 1s, retries: 3, backoff: {{base: 1ms}}}}
providers:
  a: {{kind: openai, base_url: "{url}/a/v1", api_key: key-a,
      models: {{m: {{price: {{input: 1, output: 2}}}}}}}}
  b: {{kind: openai, base_url: "{url}/b/v1", api_key: key-b, models: {{m: {{}}}}}}
  c: {{kind: anthropic, base_url: "{url}/c/v1", api_key: key-c, models: {{claude-3-5-haiku-latest: {{}}}}}}
groups:
  g: {{strategy: priority, targets: [a/m, b/m, c/claude-3-5-haiku-latest]}}
routes:
  - match: {{model: chat}}
    to: g
"""


@pytest.fixture
def cfg(fake: FakeServer, tmp_path: Path) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(CONFIG.format(url=fake.url))
    return path


def _bench(cfg: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["bench", str(cfg), "--model", "chat", "-n", "6", "-c", "3", "--no-progress", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_each_target_alone_with_its_figures(
    cfg: Path, fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.program("/b/", ["503"] * 3 + ["ok"] * 3)
    code, out, _ = _bench(cfg, capsys, "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["requests"], doc["concurrency"], doc["stream"]) == (6, 3, False)
    a, b, c = doc["targets"]
    assert [t["target"] for t in doc["targets"]] == ["a/m", "b/m", "c/claude-3-5-haiku-latest"]
    assert Counter(r["path"].split("/")[1] for r in fake.requests) == {"a": 6, "b": 6, "c": 6}
    assert (b["ok"], b["error_rate"], b["errors"]) == (3, 0.5, {"status": 3})  # not retried, not failed over
    assert (a["ok"], a["error_rate"], a["errors"]) == (6, 0.0, {})
    for t in (a, b, c):
        lat = t["latency"]
        assert set(lat) == {"p50", "p95", "p99"} and 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
        assert t["ttft"] is None and t["output_tokens_per_second"] > 0
    assert a["cost"] > 0 and a["cost_per_request"] == pytest.approx(a["cost"] / 6)
    assert c["cost"] is None  # no price


def test_streamed_it_measures_time_to_first_token(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _bench(cfg, capsys, "--stream", "--json")
    assert code == 0
    for t in json.loads(out)["targets"]:
        ttft, lat = t["ttft"], t["latency"]
        assert t["ok"] == 6 and 0 < ttft["p50"] <= lat["p99"] and set(ttft) == {"p50", "p95", "p99"}


def test_the_table(cfg: Path, fake: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    fake.program("/c/", ["reset"] * 6)
    code, out, _ = _bench(cfg, capsys)
    head, cols, *rows = out.splitlines()
    assert code == 0 and "3 targets, 6 requests each" in head and "no failover" in head
    assert cols.split()[:6] == ["target", "ok", "err%", "p50", "p95", "p99"]
    by = {row.split()[0]: row for row in rows}
    assert by["a/m"].split()[1:3] == ["6", "0.0%"] and by["a/m"].split()[-2] == "$0.000120"
    assert by["c/claude-3-5-haiku-latest"].split()[1:3] == ["0", "100.0%"]
    assert by["c/claude-3-5-haiku-latest"].endswith("reset 6")


def test_the_plot_as_svg_or_a_note_without_matplotlib(
    cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.benchmark.plot as plot

    svg = tmp_path / "lat.svg"
    if plot.available():
        code, _, err = _bench(cfg, capsys, "--plot", str(svg))
        assert code == 0 and "wrote" in err and "<svg" in svg.read_text()
    monkeypatch.setattr(plot, "available", lambda: False)
    other = tmp_path / "none.png"
    code, _, err = _bench(cfg, capsys, "--plot", str(other))
    assert code == 0 and "needs matplotlib" in err and not other.exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [(["-n", "0"], "at least 1"), (["--plot", "x.gif"], ".png or .svg")],
)
def test_usage_errors(cfg: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str) -> None:
    code, _, err = _bench(cfg, capsys, *args)
    assert code == 2 and says in err


def test_a_model_no_route_takes(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", str(cfg), "--model", "nope", "--no-progress"])
    assert code == 1 and "no route" in capsys.readouterr().err
