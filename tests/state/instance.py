"""One engine instance as a process, for the multi-instance tests: a routes.yaml path in (argv), JSON
commands on stdin, one JSON answer per command on stdout.

    python tests/state/instance.py ROUTES.yaml
    {"route": [request, ...]}     -> {"results": [{"provider", "cached", "attempts", "error"}, ...]}
                                     (the requests run concurrently)
    {"quit": true}                -> the engine is closed and the process ends

It prints ``{"ready": true}`` once the engine is built. Nothing here is shared with the test process
except the fake provider and Redis the config points at.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from engine.api import Engine
from engine.errors import RouteError


async def _one(eng: Engine, request: dict[str, Any]) -> dict[str, Any]:
    try:
        resp = await eng.route(request)
    except RouteError as exc:
        return {
            "provider": None,
            "cached": False,
            "error": type(exc).__name__,
            "attempts": [[a.target, a.outcome, a.error] for a in exc.attempts],
        }
    return {
        "provider": resp.provider,
        "cached": resp.cached,
        "error": None,
        "attempts": [[a.target, a.outcome, a.error] for a in resp.attempts],
    }


async def main(path: str) -> None:
    loop = asyncio.get_running_loop()
    async with Engine.from_file(path) as eng:
        print(json.dumps({"ready": True}), flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            if command.get("quit"):
                return
            results = await asyncio.gather(*(_one(eng, r) for r in command["route"]))
            print(json.dumps({"results": results}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
