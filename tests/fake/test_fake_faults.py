"""Directive parsing, merging, and programs (queues, seeded rates, scopes)."""

from __future__ import annotations

import pytest

from engine.fake.faults import NO_FAULT, Program, Programs, parse, seconds


def test_parse_every_directive() -> None:
    f = parse(
        "status=503, retry_after=2; retry_after_ms=150 latency=250ms reset truncate "
        "malformed die_after=3 stream_error chunk_delay=10ms chunks=50 words=9 tool "
        "cached=12 cache_write=3"
    )
    assert (f.status, f.retry_after, f.retry_after_ms, f.latency) == (503, "2", "150", 0.25)
    assert f.reset and f.truncate and f.malformed and f.stream_error
    assert (f.die_after, f.chunk_delay, f.chunks, f.words, f.tool) == (3, 0.01, 50, 9, "")
    assert (f.cached, f.cache_write) == (12, 3)


def test_a_bare_number_is_a_status_and_ok_is_no_fault() -> None:
    assert parse("429").status == 429
    assert parse("ok") == parse("ok") and not parse("ok").breaks


@pytest.mark.parametrize("bad", ["bogus", "status=abc", "latency=fast", "chunks=0", "die_after", "cached=-1"])
def test_bad_directives_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse(bad)


@pytest.mark.parametrize(("text", "secs"), [("250ms", 0.25), ("2s", 2.0), ("1.5", 1.5), ("1m", 60.0)])
def test_durations(text: str, secs: float) -> None:
    assert seconds(text) == secs


def test_merge_lets_the_later_source_override() -> None:
    merged = parse("503 latency=1s").merge(parse("status=429"))
    assert (merged.status, merged.latency, merged.label) == (429, 1.0, "503 latency=1s status=429")
    assert NO_FAULT.merge(parse("reset")).reset


def test_queue_program_consumes_one_fault_per_request_then_behaves() -> None:
    p = Program(["503", "reset", "ok"])
    got = [p.next() for _ in range(4)]
    assert got[0] is not None and got[0].status == 503
    assert got[1] is not None and got[1].reset
    assert got[2] is not None and not got[2].breaks
    assert got[3] is None and p.exhausted


def test_rate_program_is_reproducible_with_a_seed() -> None:
    def draw(seed: int) -> list[str]:
        p = Program(["503", "reset", "latency=2s"], rate=0.3, seed=seed)
        return [(p.next() or NO_FAULT).label for _ in range(200)]

    a, b = draw(7), draw(7)
    assert a == b
    hits = sum(1 for x in a if x)
    assert 30 < hits < 90  # about 30 %
    assert draw(8) != a


def test_rate_program_needs_faults_and_a_sane_rate() -> None:
    with pytest.raises(ValueError):
        Program([], rate=0.5)
    with pytest.raises(ValueError):
        Program(["503"], rate=1.5)


def test_programs_pick_the_most_specific_matching_scope() -> None:
    progs = Programs()
    progs.set(None, Program(["500", "500"]))
    progs.set("openai", Program(["502"]))
    progs.set("openai", Program(["503"]), model="gpt-a")
    progs.set("/p1", Program(["504"]))
    assert progs.next("openai", "/v1/chat/completions", "gpt-a", True).status == 503
    assert progs.next("openai", "/v1/chat/completions", "gpt-a", True).status == 502  # exhausted
    assert progs.next("anthropic", "/v1/messages", "c", True).status == 500
    assert progs.next("ollama", "/p1/api/chat", "l", True).status == 504
    assert progs.next("openai", "/v1/models", None, False) is NO_FAULT  # listings only by path
    assert progs.next("gemini", "/x", "g", True).status == 500
    assert progs.next("gemini", "/x", "g", True) is NO_FAULT
