"""The bundled fake LLM provider: requests in the openai, anthropic, gemini or ollama wire format go
in, deterministic answers or injected faults come out, over real loopback HTTP.

It imports nothing from ``engine`` outside ``engine.fake``, so it cannot share the engine's bugs.
"""

from engine.fake.faults import DIRECTIVES, KINDS, Fault
from engine.fake.run import main, refused_port, serve_in_thread
from engine.fake.server import DEFAULT_MODELS, FakeServer

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
