"""The README's run command: the demo routes real requests through the shipped config."""

from engine.cli import main


def test_demo_shows_retry_failover_breaker_stream_and_hedge(capsys) -> None:
    assert main(["demo", "routes.yaml", "--profile", "ci"]) == 0
    out = capsys.readouterr().out
    assert "flowchart LR" in out  # the graph
    assert "request body for openai/gpt-4o-mini" in out  # the plan
    assert "openai/gpt-4o-mini retry 503" in out
    assert "event: failover from openai/gpt-4o-mini" in out
    assert "event: circuit openai is open" in out
    assert "openai/gpt-4o-mini skipped circuit open" in out
    assert "ProviderError" in out and "fatal 400" in out
    assert "ttft" in out
    assert "cancelled" in out  # the hedge loser
    assert "openai     circuit=open" in out
    assert " cached " in out  # the second identical temperature-0 request
