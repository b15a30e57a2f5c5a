"""The bundled fake LLM provider: requests in the openai, anthropic, gemini or ollama wire format go
in, deterministic answers or injected faults come out, over real loopback HTTP.

It imports nothing from ``engine`` outside ``engine.fake``, so it cannot share the engine's bugs.
It is as strict as the real APIs (what they refuse, it refuses, in each API's error shape) and as
rich (usage details, prompt-cache counts, thinking, tool arguments shaped by the tool's schema);
the official SDKs parse every answer (tests/sdk).

    async with FakeServer() as srv:          # or: with serve_in_thread() as srv: (sync code)
        srv.base_url("openai")               # http://127.0.0.1:PORT/v1 (anthropic too; gemini and
                                             # ollama: http://127.0.0.1:PORT); base_url(k, "p1")
                                             # gives a provider its own path prefix
        srv.program("openai", ["503", "503", "ok"])            # one fault per chat call, in order
        srv.program(faults=["503", "reset"], rate=0.3, seed=7)  # chaos, reproducible
        srv.stats()                          # counts per path/kind/model/status + request log

Per request: an ``x-fake: status=503 retry_after=2`` header, or ``[[fake: ...]]`` in the last user
message (see ``DIRECTIVES``). Over HTTP: ``POST /_fake/program``, ``POST /_fake/reset``,
``GET /_fake/stats``. As a process: ``python -m engine.fake --port N``.
"""

from engine.fake.faults import DIRECTIVES, Fault
from engine.fake.run import main, refused_port, serve_in_thread
from engine.fake.server import FakeServer
from engine.fake.wires import DEFAULT_MODELS, KINDS

__all__ = [
    "DEFAULT_MODELS",
    "DIRECTIVES",
    "KINDS",
    "FakeServer",
    "Fault",
    "main",
    "refused_port",
    "serve_in_thread",
]
