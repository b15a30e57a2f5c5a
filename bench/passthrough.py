"""The floor of any Python gateway on this machine: a plain ASGI callable on uvicorn (uvloop,
httptools) that forwards each POST to one upstream through one shared aiohttp session and relays
the answer chunk by chunk — no routing, no auth, no parsing. The issue-11 calibration point
("a minimal pass-through"): ``bench/gateway.py`` runs it beside ``engine serve`` in the same run,
on the same core, so the engine's share of a gateway's cost is read off one table.

Run by bench/gateway.py: ``python bench/passthrough.py UPSTREAM_URL PORT``.
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import uvicorn

UPSTREAM = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
_session: aiohttp.ClientSession | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _session is not None:
                    await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    assert _session is not None
    async with _session.post(
        UPSTREAM + scope["path"], data=body, headers={"content-type": "application/json"}
    ) as r:
        ctype = r.headers.get("content-type", "application/json").encode()
        await send({"type": "http.response.start", "status": r.status, "headers": [(b"content-type", ctype)]})
        async for chunk in r.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 4100
    print("serving", flush=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )
