"""Route one request, look at what happened, plan another: the async API in twenty lines.

engine fake &                                  # the bundled fake provider, no API keys
ENGINE_PROFILE=ci python examples/quickstart.py
"""

import asyncio
from pathlib import Path

from engine import Engine, RouteError

CONFIG = Path(__file__).parent / "routes.yaml"  # the profile comes from $ENGINE_PROFILE


async def main() -> None:
    async with Engine.from_file(CONFIG) as eng:
        request = {
            "model": "chat",
            "messages": [{"role": "user", "content": "Hello!"}],
            "temperature": 0,
            "max_tokens": 64,
        }
        try:
            resp = await eng.route(request)
        except RouteError as exc:  # AllTargetsFailed, DeadlineExceeded, ProviderError, ...
            print(f"{type(exc).__name__}: {exc}")
            for attempt in exc.attempts:
                print("  attempt", attempt)
            raise SystemExit(1) from None
        print(f"{resp.provider}/{resp.model} said {resp.text!r}")
        print(
            f"tokens {resp.usage.input_tokens}+{resp.usage.output_tokens}, cost ${resp.cost:.8f}, "
            f"cached {resp.cached}"
        )
        for attempt in resp.attempts:  # every try: target, outcome, status, error, latency
            print("  attempt", attempt)
        again = await eng.route(request)  # temperature 0: answered from the response cache
        print(f"asked again: cached {again.cached}, cost ${again.cost:.2f}")
        plan = eng.plan({"model": "claude-3-5-haiku-latest", "messages": []})  # no network
        print(plan.text().splitlines()[1])  # the route it takes


asyncio.run(main())
