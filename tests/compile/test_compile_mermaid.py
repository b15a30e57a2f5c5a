"""engine.mermaid: routes -> groups -> targets as a deterministic Mermaid flowchart."""

from __future__ import annotations

import re
from typing import Any

from engine.graph import RoutingGraph
from engine.mermaid import to_mermaid


def test_mermaid_snapshot(good: RoutingGraph, snapshot: Any) -> None:
    assert to_mermaid(good) == snapshot


def test_mermaid_shape(good: RoutingGraph) -> None:
    text = to_mermaid(good)
    assert text.startswith("flowchart LR\n") and text.endswith("\n")
    assert 'r0(["#0 model=chat"])' in text
    assert 'g_chat{{"chat<br/>priority"}}' in text
    assert "g_chat -->|1| t_openai_gpt_4o_mini" in text  # priority: position
    assert "g_mix -->|w=3| g_chat" in text  # weighted: weight
    assert "r2 --> t_local" in text
    assert to_mermaid(good) == to_mermaid(good)


def test_every_node_is_declared_once_and_every_edge_uses_declared_nodes(good: RoutingGraph) -> None:
    lines = to_mermaid(good).splitlines()[1:]
    declared = [re.match(r"\s*(\w+)[\[\(\{]", x).group(1) for x in lines if "-->" not in x]  # type: ignore[union-attr]
    assert len(declared) == len(set(declared))
    for edge in (x for x in lines if "-->" in x):
        src, dst = edge.split()[0], edge.split()[-1]
        assert src in declared and dst in declared, edge


def test_hedged_label_and_quotes(cfg: Any) -> None:
    text = cfg.replace("    strategy: priority\n", "    strategy: hedged\n    hedge_after: 400ms\n")
    text = cfg.replace("  - match: {model: chat}\n", '  - match: {model: "c\\"hat"}\n', text)
    out = to_mermaid(cfg.compile(text))
    assert 'g_chat{{"chat<br/>hedged after 400ms"}}' in out
    assert "#quot;" in out and 'c"hat' not in out


def test_names_that_differ_only_in_punctuation_stay_distinct(cfg: Any) -> None:
    text = cfg.replace("models: [llama3.2]", "models: [llama3.2, llama3-2, llama3_2]")
    text = cfg.replace("    to: local\n", "    to: split\n", text)
    text = cfg.replace("groups:\n", "groups:\n  split: {targets: [local/llama3-2, local/llama3_2]}\n", text)
    out = to_mermaid(cfg.compile(text))
    assert 't_local_llama3_2["local/llama3.2"]' in out
    assert 't_local_llama3_2_2["local/llama3-2"]' in out
    assert 't_local_llama3_2_3["local/llama3_2"]' in out
