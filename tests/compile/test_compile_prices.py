"""``price: {input, output, cache_read, cache_write}``: the schema accepts the cache prices (0 or
more), the compiler carries them into ``graph.Price``, ``describe()`` shows them, and ``cost``
prices cached tokens at them (as input without them), reasoning billed as output."""

from __future__ import annotations

from typing import Any

import pytest

from engine.graph import Price, RoutingGraph
from engine.result import Usage

OLD = "gpt-4o-mini: {context: 128000, price: {input: 0.15, output: 0.60}}"


def _with(cfg: Any, price: str) -> str:
    assert OLD in cfg.text
    return cfg.text.replace(OLD, f"gpt-4o-mini: {{context: 128000, price: {price}}}")


def test_cache_prices_compile_into_the_graph(cfg: Any) -> None:
    graph: RoutingGraph = cfg.compile(
        _with(cfg, "{input: 0.15, output: 0.6, cache_read: 0.075, cache_write: 0.2}")
    )
    price = graph.providers["openai"].models["gpt-4o-mini"].price
    assert price == Price(0.15, 0.6, 0.075, 0.2)
    assert (
        "model gpt-4o-mini context=128000 price=0.15/0.6 cache_read=0.075 cache_write=0.2" in graph.describe()
    )


def test_without_cache_prices_nothing_changes(good: RoutingGraph) -> None:
    price = good.providers["openai"].models["gpt-4o-mini"].price
    assert price == Price(0.15, 0.6)
    assert "price=0.15/0.6\n" in good.describe() + "\n"


@pytest.mark.parametrize("key", ["cache_read", "cache_write"])
def test_a_negative_cache_price_is_an_error(cfg: Any, key: str) -> None:
    err = cfg.one_error(_with(cfg, f"{{input: 0.15, output: 0.6, {key}: -1}}"))
    assert err.path.endswith(f"price.{key}")


def test_cost_prices_cache_reads_and_writes_at_their_prices() -> None:
    usage = Usage(
        1_000_000, 100_000, cache_read_tokens=600_000, cache_write_tokens=300_000, reasoning_tokens=80_000
    )
    # 100k uncached x 3 + 600k read x 0.3 + 300k written x 3.75 + 100k output x 15 (reasoning in it)
    assert Price(3.0, 15.0, 0.3, 3.75).cost(usage) == pytest.approx(0.3 + 0.18 + 1.125 + 1.5)
    # without cache prices: every prompt token at the input price
    assert Price(3.0, 15.0).cost(usage) == pytest.approx(3.0 + 1.5)
    assert Price(3.0, 15.0, cache_read=0.3).cost(usage) == pytest.approx(0.3 + 0.18 + 0.9 + 1.5)
    # counts that do not add up (more cached than the prompt) never make the uncached part negative
    assert Price(1.0, 1.0, cache_read=0.0).cost(Usage(5, 0, cache_read_tokens=9)) == 0.0
