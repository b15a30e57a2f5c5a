"""The access log: one line per request on ``engine.access``, text or JSON, no secret, no text."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import select
from typing import Any

import pytest
from conftest import CONFIG, Clock

from engine.compiler import compile_text
from engine.errors import ProviderError
from engine.result import Attempt, Done, Response, Usage
from engine.telemetry import NULL, Telemetry
from engine.telemetry.logs import LOGGER, AccessLog, LineHandler

SECRETS = ("sk-secret-openai-123", "gsk-secret-456", "sk-ant-secret-789", "gem-secret-000")
REQUEST = {"model": "chat", "messages": [{"role": "user", "content": "tell no one: PINEAPPLE"}]}


def _tel(fmt: str = "text", metrics: bool = True) -> Telemetry:
    text = CONFIG + f"telemetry: {{metrics: {str(metrics).lower()}, logs: {{format: {fmt}}}}}\n"
    return Telemetry.for_graph(compile_text(text), clock=Clock())


def _answered(tel: Telemetry) -> None:
    graph_route = compile_text(CONFIG).routes[0]
    rec = tel.request_started(graph_route, "chat", REQUEST, request_id="req-7", stream=True)
    tel.clock.now = 0.05  # type: ignore[attr-defined]
    rec.first_chunk()
    tel.clock.now = 0.25  # type: ignore[attr-defined]
    tries = (
        Attempt("oa/gpt-4o-mini", "failover", 500, latency=0.1, kind="status"),
        Attempt("anth/claude-3-5-haiku-latest", "ok", 200, latency=0.15),
    )
    for a in tries:
        rec.try_ended(a)
    rec.ended(
        Done("anth", "claude-3-5-haiku-20241022", usage=Usage(9, 3), cost=0.0012, attempts=tries), chunks=3
    )


def test_a_text_line_holds_the_fields(caplog: pytest.LogCaptureFixture) -> None:
    tel = _tel()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _answered(tel)
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "request_id=req-7 route=0 target=anth/claude-3-5-haiku-latest "
        "model=claude-3-5-haiku-20241022 tries=2 outcome=ok status=200 latency_ms=250 "
        "ttfc_ms=50 input_tokens=9 output_tokens=3 cost=0.0012 cache=none"
    )


def test_a_json_line_and_an_error(caplog: pytest.LogCaptureFixture) -> None:
    tel = _tel("json")
    route = compile_text(CONFIG).routes[0]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _answered(tel)
        rec = tel.request_started(route, "chat", REQUEST)
        bad = Attempt(
            "oa/gpt-4o-mini",
            "fatal",
            400,
            latency=0.01,
            kind="status",
            detail="sk-secret-openai-123 is not a valid key: PINEAPPLE",
        )
        rec.try_ended(bad)
        rec.ended(ProviderError("bad request: sk-secret-openai-123", (bad,), status=400, body="PINEAPPLE"))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert lines[0]["request_id"] == "req-7" and lines[0]["cost"] == 0.0012
    assert lines[1]["outcome"] == "provider_error" and lines[1]["status"] == 400
    assert lines[1]["tries"] == 1 and "target" not in lines[1]
    assert lines[1]["request_id"] != lines[0]["request_id"]  # one made up when none was given
    text = caplog.text
    assert "PINEAPPLE" not in text
    assert not [s for s in SECRETS if s in text]


def test_nothing_is_built_while_the_logger_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    logging.getLogger(LOGGER).setLevel(logging.WARNING)
    try:
        tel = _tel(metrics=False)
        monkeypatch.setattr(AccessLog, "write", lambda self, f: pytest.fail("formatted a line"))
        assert tel.request_started(None, "chat") is NULL
        metered = _tel()
        rec = metered.request_started(None, "chat")
        assert rec is not NULL
        rec.ended(Response("x", "oa", "gpt-4o-mini"))
    finally:
        logging.getLogger(LOGGER).setLevel(logging.NOTSET)


def test_a_line_handler_alone_gets_the_line_straight_and_a_filter_sees_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[str] = []
    make = logging.Logger.makeRecord

    def counted(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(args[0])
        return make(self, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "makeRecord", counted)
    logger, out = logging.getLogger(LOGGER), io.StringIO()
    handler = LineHandler(out)
    saved = logger.handlers, logger.propagate, logger.level
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    seen: list[logging.LogRecord] = []
    try:
        log = AccessLog()
        log.write({"request_id": "r1", "route": "0", "latency_ms": 1.5, "target": "a b", "cost": None})
        assert out.getvalue() == 'request_id=r1 route=0 target="a b" latency_ms=1.5\n'
        assert made == []  # no LogRecord for it
        handler.addFilter(lambda r: seen.append(r) or True)  # a filter: records again, with their fields
        log.write({"request_id": "r2", "status": 200})
        assert out.getvalue().endswith("request_id=r2 status=200\n")
        assert [r.access for r in seen] == [{"request_id": "r2", "status": 200}]  # type: ignore[attr-defined]
        assert made == [LOGGER]
        logger.setLevel(logging.WARNING)
        log.write({"request_id": "r3"})
        assert "r3" not in out.getvalue()
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def test_the_straight_line_quotes_as_the_record_does() -> None:
    """serve's LineHandler gets the text built without a record; a record's message is the
    same text, for values that need quoting, an empty one, a bool and small and large floats."""
    logger, out = logging.getLogger(LOGGER), io.StringIO()
    saved = logger.handlers, logger.propagate, logger.level
    logger.handlers, logger.propagate = [LineHandler(out)], False
    logger.setLevel(logging.INFO)
    fields = {
        "request_id": 'a "b"',
        "route": "",
        "target": "x=y",
        "model": "m\nn",
        "tries": True,
        "outcome": "ok",
        "status": 200,
        "latency_ms": 1234567.891,
        "ttfc_ms": 0.000012,
        "cost": 0.0,
        "cache": "none",
    }
    try:
        AccessLog().write(fields)
        straight = out.getvalue()
        seen: list[str] = []
        logger.handlers[0].addFilter(lambda r: seen.append(r.getMessage()) or True)
        AccessLog().write(fields)
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
    assert straight == (
        'request_id="a \\"b\\"" route="" target="x=y" model="m\\nn" tries=True outcome=ok '
        "status=200 latency_ms=1.23457e+06 ttfc_ms=1.2e-05 cost=0 cache=none\n"
    )
    assert seen == [straight[:-1]]


class _Writes(io.StringIO):
    """A stream that keeps every ``write`` it was given, one entry each."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_lines_of_one_loop_turn_go_out_in_one_write_in_order() -> None:
    """In a running loop, the lines of one turn are one write at the turn's end; a record in
    between writes the lines before it first; no write holds more than PIPE_BUF bytes, and
    each ends at a line's end (workers sharing a pipe never interleave inside a line)."""
    out = _Writes()
    handler = LineHandler(out)

    async def turn() -> None:
        handler.line("a=1")
        handler.line("a=2")
        assert out.writes == []  # not yet: at the end of the turn
        await asyncio.sleep(0)
        assert out.writes == ["a=1\na=2\n"]
        handler.line("a=3")
        handler.emit(logging.makeLogRecord({"msg": "a record"}))  # the line before it goes first
        assert out.getvalue().endswith("a=3\na record\n")
        for i in range(100):
            handler.line(f"b={i:03d} " + "x" * 200)
        await asyncio.sleep(0)

    asyncio.run(turn())
    big = out.writes[-(len(out.writes) - 3) :]
    assert len(big) > 1 and all(len(w.encode()) <= select.PIPE_BUF and w.endswith("\n") for w in big)
    lines = out.getvalue().splitlines()
    assert lines[:4] == ["a=1", "a=2", "a=3", "a record"]
    assert [line[:5] for line in lines[4:]] == [f"b={i:03d}" for i in range(100)]
    handler.line("outside a loop")  # written at once
    assert out.writes[-1] == "outside a loop\n"


def test_lines_left_by_a_loop_that_ended_go_out_with_the_next_loop_line() -> None:
    """A loop closed before its turn ended (its write never ran) does not hold later lines."""
    out = _Writes()
    handler = LineHandler(out)
    loop = asyncio.new_event_loop()

    def last_turn() -> None:
        loop.stop()  # this turn is the loop's last: the write due at its end never runs
        handler.line("first")

    loop.call_soon(last_turn)
    loop.run_forever()
    loop.close()
    assert out.getvalue() == ""

    async def one(text: str) -> None:
        handler.line(text)

    asyncio.run(one("second"))
    assert out.getvalue() == "first\nsecond\n"
