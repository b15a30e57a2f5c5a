"""Property-based tests: whatever text goes in, compile_text returns a graph or raises ConfigError —
never any other exception. Inputs: random YAML-ish text, random JSON documents over the config's
own vocabulary, and random mutations (structural and textual) of the shipped routes.yaml. A graph
that does come out can always be described and planned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.compiler import compile_text
from engine.errors import ConfigError, NoRouteError
from engine.graph import RoutingGraph
from engine.loader import load_text
from engine.plan import build_plan

ROOT = Path(__file__).parents[2]
SHIPPED = (ROOT / "routes.yaml").read_text(encoding="utf-8")
SHIPPED_DATA = load_text(SHIPPED).data
ENV = {"OPENAI_API_KEY": "k", "GROQ_API_KEY": "k"}

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

WORDS = [
    "version",
    "defaults",
    "speeds",
    "retry",
    "breakers",
    "cache",
    "providers",
    "groups",
    "routes",
    "speed",
    "breaker",
    "deadline",
    "fast",
    "medium",
    "slow",
    "connect",
    "read",
    "pool",
    "retries",
    "backoff",
    "base",
    "factor",
    "max",
    "jitter",
    "extends",
    "transient",
    "never",
    "retry_on",
    "failover_on",
    "retry_after",
    "honor",
    "ignore",
    "status",
    "errors",
    "timeout",
    "standard",
    "failures",
    "recovery",
    "scope",
    "provider",
    "model",
    "backend",
    "memory",
    "models",
    "ttl",
    "responses",
    "max_temperature",
    "openai",
    "anthropic",
    "gemini",
    "ollama",
    "kind",
    "base_url",
    "api_key",
    "headers",
    "template",
    "limits",
    "rpm",
    "tpm",
    "context",
    "price",
    "input",
    "output",
    "chat",
    "strategy",
    "priority",
    "weighted",
    "hedged",
    "round_robin",
    "least_latency",
    "targets",
    "target",
    "weight",
    "max_attempts",
    "hedge_after",
    "match",
    "metadata",
    "to",
    "none",
    "openai/gpt-4o-mini",
    "chat/x",
    "a/b/c:d",
    "250ms",
    "5s",
    "1h",
    "-1s",
    "${X}",
    "${X:-y}",
    "$${Z}",
    "${",
    "https://h/v1",
    "redis://:p@h/0",
    "templates/openai/chat.json.j2",
]


def _compile(text: str) -> RoutingGraph | None:
    try:
        graph = compile_text(text, base_dir=ROOT, env=ENV)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError always carries its problems"
        for p in exc.problems:
            assert p.format()  # printable
        return None
    _exercise(graph)
    return graph


def _exercise(graph: RoutingGraph) -> None:
    graph.describe()
    for model in ("chat", "gpt-4o", "llama3.2", "zzz"):
        try:
            build_plan(
                graph,
                {
                    "model": model,
                    "messages": [{"role": "user", "content": "hi"}],
                    "temperature": 0,
                    "metadata": {"tier": "free"},
                },
            ).text()
        except NoRouteError:
            pass


# -- random text ------------------------------------------------------------------------------

TOKENS = [
    *": -[]{},'\"\n\t#&*!|>?%@`$._/\\=~0123456789aeknoprstv",
    "\n  ",
    "\n- ",
    ": ",
    "${",
    "&a ",
    "*a",
    "!!",
    "---",
    *WORDS[:20],
]
YAMLISH = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


@SETTINGS
@given(YAMLISH)
def test_random_yamlish_text(text: str) -> None:
    _compile(text)


@SETTINGS
@given(st.text(max_size=60))
def test_random_unicode_text(text: str) -> None:
    _compile("version: 1\n" + text)


# -- random documents over the config's vocabulary -----------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(WORDS), inner, max_size=5)
    ),
    max_leaves=30,
)


@SETTINGS
@given(st.dictionaries(st.sampled_from(WORDS), DOCS, max_size=8))
def test_random_documents(doc: dict[str, Any]) -> None:
    _compile(json.dumps(doc))


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["speeds", "retry", "breakers", "providers", "groups", "defaults", "cache"]),
        DOCS,
        max_size=3,
    ),
    st.lists(st.dictionaries(st.sampled_from(["match", "to", "deadline"]), DOCS, max_size=3), max_size=3),
)
def test_random_sections_on_a_valid_skeleton(sections: dict[str, Any], routes: list[dict[str, Any]]) -> None:
    doc = {
        "version": 1,
        "providers": {"p": {"kind": "ollama", "models": ["m"]}},
        "routes": [{"to": "p"}, *routes],
        **sections,
    }
    _compile(json.dumps(doc))


# -- mutations of the shipped routes.yaml -------------------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = _paths(SHIPPED_DATA)


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def _copy(node: Any) -> Any:
    return json.loads(json.dumps(node))


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = _copy(SHIPPED_DATA)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _get(doc, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "retype", "swap", "duplicate", "rename"]))
        if op == "delete":
            del parent[last]
        elif op == "retype":
            parent[last] = draw(DOCS)
        elif op == "swap":
            other = draw(st.sampled_from(paths))
            if other[: len(path)] != path and path[: len(other)] != other:
                a, b = _get(doc, path), _get(doc, other)
                parent[last], _get(doc, other[:-1])[other[-1]] = _copy(b), _copy(a)
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(_copy(parent[last]))
        elif op == "rename" and isinstance(parent, dict):
            new = draw(st.sampled_from(WORDS))
            parent[new] = parent.pop(last)
    return doc


@SETTINGS
@given(mutated_documents())
def test_structural_mutations_of_the_shipped_config(doc: dict[str, Any]) -> None:
    _compile(json.dumps(doc))


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    text = SHIPPED
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(["truncate", "garbage", "delete_line", "duplicate_line", "swap_lines", "indent"])
        )
        lines = text.splitlines(keepends=True) or [""]
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1))
        if op == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        elif op == "garbage":
            pos = draw(st.integers(0, len(text)))
            junk = draw(st.text(alphabet=": -[]{},'\"\n\t#&*!|>?%@`${}\\x", min_size=1, max_size=4))
            text = text[:pos] + junk + text[pos:]
        elif op == "delete_line":
            text = "".join(lines[:i] + lines[i + 1 :])
        elif op == "duplicate_line":
            text = "".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
        elif op == "swap_lines":
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
        else:
            lines[i] = draw(st.sampled_from(["", " ", "  ", "\t"])) + lines[i].lstrip(" ")
            text = "".join(lines)
    return text


@SETTINGS
@given(mutated_text())
def test_text_mutations_of_the_shipped_config(text: str) -> None:
    _compile(text)


def test_the_unmutated_shipped_config_compiles() -> None:
    assert _compile(SHIPPED) is not None
    assert _compile(json.dumps(SHIPPED_DATA)) is not None
