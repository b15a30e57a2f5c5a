"""The synchronous API, for scripts: ``route_sync`` runs requests on the engine's own event-loop
thread, and the ``with`` block closes that thread and every connection when it ends.

    engine fake &
    ENGINE_PROFILE=ci python examples/sync_script.py

``Engine.from_file(...).route_sync(...)`` on one line is closed at interpreter exit; the ``with``
block closes the engine when it ends instead, and routes as many requests as you like in it.
"""

from pathlib import Path

from engine import Engine

CONFIG = Path(__file__).parent / "routes.yaml"

with Engine.from_file(CONFIG) as eng:
    for question in ("What is a circuit breaker?", "And a failover group?"):
        resp = eng.route_sync({"model": "chat", "messages": [{"role": "user", "content": question}]})
        print(f"{resp.provider}: {resp.text}  ({resp.latency * 1000:.0f}ms)")
    print("health:", {name: h.circuit for name, h in eng.health().items()})
print("closed: no connection left open")
