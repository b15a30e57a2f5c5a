"""Two engine instances on one Redis share the response cache (and circuits, rate limits and
model listings): what one learned, the other answers without going upstream.

    redis-server --port 6379 &   engine fake &
    ENGINE_PROFILE=ci python examples/two_instances_redis.py redis://127.0.0.1:6379/0

In production the two would be two processes behind a load balancer, each with the same
routes.yaml and ``cache.backend: ${REDIS_URL}``; here they are two engines in one script.
"""

import asyncio
import os
import sys
from pathlib import Path

from engine import Engine, compile_file

CONFIG = Path(__file__).parent / "routes.yaml"  # cache.backend: ${REDIS_URL:-memory}


async def main(redis_url: str) -> None:
    graph = compile_file(
        CONFIG, profile=os.environ.get("ENGINE_PROFILE") or None, env={**os.environ, "REDIS_URL": redis_url}
    )
    request = {
        "model": "chat",
        "temperature": 0,
        "messages": [{"role": "user", "content": "Shared between instances"}],
    }
    async with Engine.from_graph(graph) as one, Engine.from_graph(graph) as two:
        # metadata cache=refresh: go upstream and replace the entry (so a second run shows the
        # same thing); the answer is written to Redis
        first = await one.route({**request, "metadata": {"cache": "refresh"}})
        print(f"instance one: {first.text!r} from {first.provider} (cached {first.cached})")
        second = await two.route(request)
        print(
            f"instance two: {second.text!r} (cached {second.cached}: "
            f"{second.attempts[0].outcome}, nothing sent upstream)"
        )


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("REDIS_URL", "")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        sys.exit("usage: python examples/two_instances_redis.py redis://HOST:PORT/DB")
    asyncio.run(main(url))
