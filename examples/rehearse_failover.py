"""Rehearse an outage before it happens: program the fake provider to answer 503, and watch the
engine retry, fail over to the next target and open the circuit, then skip the broken provider
at no cost until the breaker's recovery time has passed.

    engine fake &                                   # or: engine fake --port 8500, and
    ENGINE_PROFILE=ci python examples/rehearse_failover.py   #  ENGINE_FAKE_URL=http://127.0.0.1:8500

The fake is programmed over HTTP (POST /_fake/program: one fault per request, in order, for a
scope); a single request can also carry its own fault: "[[fake: 503]]" in its text, or an
``x-fake: 503`` header. `engine fake --help` lists every directive.
"""

import asyncio
import os
from pathlib import Path

import httpx

from engine import Engine, RouteError

CONFIG = Path(__file__).parent / "routes.yaml"
FAKE = os.environ.get("ENGINE_FAKE_URL", "http://127.0.0.1:8400")


def program(faults: list[str]) -> None:
    """Every chat call of the openai kind for gpt-4o-mini gets the next fault of the list."""
    httpx.post(
        f"{FAKE}/_fake/program", json={"scope": "openai", "model": "gpt-4o-mini", "faults": faults}
    ).raise_for_status()


async def main() -> None:
    async with Engine.from_file(CONFIG) as eng:
        eng.on("retry", lambda e: print(f"  event: retry {e.target} after {e.attempt.status}"))
        eng.on("failover", lambda e: print(f"  event: failover from {e.target}"))
        eng.on("breaker", lambda e: print(f"  event: circuit {e.circuit} is {e.state}"))
        program(["503"] * 3)  # the openai target's three tries (speed fast: 2 retries) all fail
        for text in ("first request: openai is down", "second request: its circuit is open"):
            print(f"-- {text}")
            try:
                resp = await eng.route({"model": "chat", "messages": [{"role": "user", "content": text}]})
            except RouteError as exc:
                print(f"  {type(exc).__name__}: {exc}")
                continue
            for attempt in resp.attempts:
                print("  attempt", attempt)
            print(f"  answered by {resp.provider}/{resp.model}")
        print("-- health:", {name: h.circuit for name, h in eng.health().items()})
    httpx.post(f"{FAKE}/_fake/reset").raise_for_status()  # leave the fake as it was


asyncio.run(main())
