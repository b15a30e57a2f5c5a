"""engine.graph: the compiled graph is immutable all the way down, and describe() is canonical."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from engine.graph import RoutingGraph


def _nodes(root: Any) -> Iterator[Any]:
    """Every dataclass instance reachable from ``root`` (through fields, mappings and tuples)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            yield obj
            stack += [getattr(obj, f.name) for f in dataclasses.fields(obj)]
        elif isinstance(obj, Mapping):
            stack += list(obj.values())
        elif isinstance(obj, tuple | frozenset):
            stack += list(obj)


def _mappings(root: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for node in _nodes(root):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if isinstance(value, Mapping):
                yield f"{type(node).__name__}.{f.name}", value


def test_every_node_kind_is_reached(good: RoutingGraph) -> None:
    kinds = {type(n).__name__ for n in _nodes(good)}
    assert kinds >= {
        "RoutingGraph",
        "Provider",
        "Speed",
        "Backoff",
        "Classifier",
        "Breaker",
        "Group",
        "Member",
        "Target",
        "Route",
        "Match",
        "CacheConfig",
        "Model",
        "Price",
        "Pool",
    }


def test_assigning_any_attribute_raises(good: RoutingGraph) -> None:
    count = 0
    for node in _nodes(good):
        for f in dataclasses.fields(node):
            with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
                setattr(node, f.name, None)
            count += 1
        with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
            node.brand_new_attribute = 1
    assert count > 100


def test_assigning_or_deleting_any_mapping_item_raises(good: RoutingGraph) -> None:
    mappings = list(_mappings(good))
    names = {name for name, _ in mappings}
    assert {
        "RoutingGraph.providers",
        "RoutingGraph.groups",
        "RoutingGraph.speeds",
        "RoutingGraph.classifiers",
        "RoutingGraph.breakers",
        "Provider.models",
        "Provider.headers",
        "Match.metadata",
    } <= names
    for _, m in mappings:
        with pytest.raises(TypeError):
            m["x"] = 1  # type: ignore[index]
        for key in list(m)[:1]:
            with pytest.raises(TypeError):
                del m[key]  # type: ignore[attr-defined]
        assert not hasattr(m, "clear") and not hasattr(m, "update")


def test_collections_are_immutable_types(good: RoutingGraph) -> None:
    assert isinstance(good.routes, tuple)
    for route in good.routes:
        assert isinstance(route.targets, tuple)
    for group in good.groups.values():
        assert isinstance(group.members, tuple)
    for k in good.classifiers.values():
        assert isinstance(k.retry_status, frozenset) and isinstance(k.failover_errors, frozenset)


def test_the_compiled_template_is_immutable_too(good: RoutingGraph) -> None:
    tpl = good.providers["openai"].template
    with pytest.raises((AttributeError, TypeError)):
        tpl.source = "{}"


def test_describe_is_deterministic(cfg: Any) -> None:
    a, b = cfg.compile().describe(), cfg.compile().describe()
    assert a == b and a.endswith("\n")


def test_describe_does_not_depend_on_the_order_of_named_sections(cfg: Any) -> None:
    text = cfg.text
    start, end = text.index("  openai:\n"), text.index("  claude:\n")
    openai_block = text[start:end]
    local_end = text.index("groups:\n")
    reordered = text[:start] + text[end:local_end] + openai_block + text[local_end:]
    assert reordered != text
    assert cfg.compile(reordered).describe() == cfg.compile().describe()


def test_describe_shows_max_response_only_when_not_the_default(cfg: Any, good: RoutingGraph) -> None:
    assert "max_response" not in good.describe()
    text = cfg.text.replace("    speed: slow\n", "    speed: slow\n    max_response: 16MiB\n")
    (line,) = [x for x in cfg.compile(text).describe().splitlines() if "max_response" in x]
    assert line.startswith("  local: kind=ollama") and line.endswith(" max_response=16MiB")


def test_describe_snapshot(good: RoutingGraph, snapshot: Any) -> None:
    assert good.describe() == snapshot


def test_repr_is_compact(good: RoutingGraph) -> None:
    assert repr(good) == "RoutingGraph(3 providers, 2 groups, 4 routes)"
    assert repr(good.providers["openai"]) == "Provider('openai', kind='openai')"
    assert repr(good.groups["chat"]) == "Group('chat', priority)"
    assert repr(good.routes[0]) == "Route(0, model=chat -> chat)"


def test_match(good: RoutingGraph) -> None:
    assert good.match("chat", {}).index == 0  # type: ignore[union-attr]
    assert good.match("x", {"tier": "free"}).index == 1  # type: ignore[union-attr]
    assert good.match("llama3.2", {}).index == 2  # type: ignore[union-attr]
    assert good.match("anything", {"tier": "paid"}).index == 3  # type: ignore[union-attr]
