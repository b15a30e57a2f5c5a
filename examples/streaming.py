"""Stream a reply: text deltas as they arrive, then one ``Done`` with usage, time to first token
and the attempts (failover is allowed until the first event).

    engine fake &
    ENGINE_PROFILE=ci python examples/streaming.py
"""

import asyncio
from pathlib import Path

from engine import Done, Engine, TextDelta

CONFIG = Path(__file__).parent / "routes.yaml"


async def main() -> None:
    async with Engine.from_file(CONFIG) as eng:
        request = {
            "model": "chat",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "Tell me about streaming, word by word"}],
        }
        async for event in eng.stream(request):
            if isinstance(event, TextDelta):
                print(event.text, end="", flush=True)
            elif isinstance(event, Done):
                ttft = f"{event.ttft * 1000:.1f}ms" if event.ttft is not None else "n/a"
                print(
                    f"\n-- {event.provider}/{event.model}: finish {event.finish_reason}, "
                    f"{event.usage.output_tokens} tokens, first token after {ttft}"
                )
                for attempt in event.attempts:
                    print("  attempt", attempt)


asyncio.run(main())
