"""engine.nesting: where YAML text first nests deeper than a limit, found before any parser sees it
(ruamel's C composer overflows the C stack, a segfault, at some 20,000-40,000 levels)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from engine.nesting import _scan, too_deep

ROOT = Path(__file__).parents[2]
DEEP = 40_000

# text -> (line, column), 0-based, of the collection that opens level 51
TOO_DEEP = {
    "flow sequence": ("a: " + "[" * DEEP + "]" * DEEP + "\n", (0, 52)),
    "flow mapping": ("a: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n", (0, 199)),
    "flow inside a block": ("a:\n  b:\n    - " + "[" * DEEP + "\n", (2, 53)),
    "block sequence on one line": ("a:\n  " + "- " * DEEP + "x\n", (1, 100)),
    "complex keys on one line": ("? " * DEEP + "x\n", (0, 100)),
    "block mappings by indentation": ("".join(" " * k + f"k{k}:\n" for k in range(60)), (50, 50)),
    "indentless sequences": ("".join("  " * k + "- a:\n" for k in range(200)), (49, 100)),
    "a quote continuing a plain scalar is no quote": ('a: [x\n  "' + "[" * 60 + "\n", (1, 51)),
    "after a block scalar": ("a: |\n  [[[\n  - - -\nb: " + "[" * 60 + "\n", (3, 52)),
    "after a comment with a quote": ("# it's\nb: " + "[" * 60 + "\n", (1, 52)),
    "after a plain scalar with a quote": ("a: it's\nb: " + "[" * 60 + "\n", (1, 52)),
    "CR line breaks": ("a: 1\r\nb:\r\n  " + "[" * 60 + "\r\n", (2, 51)),
}

NOT_NESTING = {
    "double-quoted": 'a: "' + "[" * DEEP + '"\n',
    "single-quoted with escapes": "a: '" + "{''" * 5000 + "'\n",
    "escaped double quote": 'a: ["\\"' + "[" * 5000 + '", b]\n',
    "comment line": "# " + "[" * DEEP + "\na: 1\n",
    "comment after a value": "a: 1  # " + "{" * DEEP + "\n",
    "plain scalar": "a: x " + "[" * DEEP + "\n",
    "plain scalar over lines": "a: x\n  " + "[" * DEEP + "\n  " + "- " * DEEP + "\nb: 1\n",
    "multi-line double-quoted": 'a: "x\n  ' + "[" * DEEP + '"\n',
    "literal block scalar": "a: |\n  " + "[" * DEEP + "\n  " + "- " * DEEP + "\nb: 1\n",
    "folded block scalar after a blank line": "a: >-\n\n   " + "{" * DEEP + "\nb: 1\n",
    "quoted brackets in a flow": "a: [" + ", ".join(['"]["', "'{'"] * 500) + "]\n",
}


@pytest.mark.parametrize("name", TOO_DEEP)
def test_the_first_collection_past_the_limit_is_found(name: str) -> None:
    text, where = TOO_DEEP[name]
    assert too_deep(text, 50) == where
    assert _scan(text, 50, False) == where  # token by token: the same place


@pytest.mark.parametrize("name", NOT_NESTING)
def test_quotes_comments_and_scalars_do_not_nest(name: str) -> None:
    text = NOT_NESTING[name]
    assert too_deep(text, 50) is None
    YAML(typ="safe", pure=False).compose(text)  # and the C parser agrees (no crash, no error)


def test_the_limit_is_inclusive() -> None:
    # a root mapping and 49 flow levels: 50 collections; one more is too many
    assert too_deep("a: " + "[" * 49 + "]" * 49 + "\n", 50) is None
    assert too_deep("a: " + "[" * 50 + "]" * 50 + "\n", 50) == (0, 52)
    block = "".join(" " * k + f"k{k}:\n" for k in range(50))
    assert too_deep(block, 50) is None and too_deep(block + " " * 50 + "k: v\n", 50) == (50, 50)


def _config(routes: int) -> str:
    out = ["version: 1", "providers:"]
    for i in range(routes // 5):
        out += [
            f"  p{i}:",
            f"    kind: openai  # {i}",
            f"    base_url: https://p{i}.example/v1",
            f"    models: {{m{i}: {{price: {{input: 0.1, output: 0.4}}}}, n{i}: {{}}}}",
        ]
    out.append("routes:")
    for r in range(routes):
        out += [
            f"  - match: {{model: \"m-{r}*\", metadata: {{tier: 't{r}'}}}}",
            f"    to: p{r % 7}",
            "    deadline: 10m",
        ]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    "text",
    [
        (ROOT / "routes.yaml").read_text(encoding="utf-8"),
        *(p.read_text(encoding="utf-8") for p in sorted((ROOT / "profiles").glob("*.yaml"))),
        _config(300),
    ],
    ids=lambda t: t.splitlines()[0][:30],
)
def test_whole_lines_and_tokens_agree_on_configs(text: str) -> None:
    for limit in (6, 7, 8, 50):
        assert too_deep(text, limit) == _scan(text, limit, False)
    assert too_deep(text, 50) is None


def _depth(text: str) -> int:
    """How deep the C parser's events go before the end or the first error (what its composer
    would recurse to)."""
    depth = deepest = 0
    try:
        for event in YAML(typ="safe", pure=False).parse(text):
            name = type(event).__name__
            if name in ("SequenceStartEvent", "MappingStartEvent"):
                depth += 1
                deepest = max(deepest, depth)
            elif name in ("SequenceEndEvent", "MappingEndEvent"):
                depth -= 1
    except YAMLError:
        pass
    return deepest


def _counted(text: str, whole_lines: bool) -> int:
    """The least limit the scan passes ``text`` at."""
    lo, hi = 0, len(text) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _scan(text, mid, whole_lines) is None:
            hi = mid
        else:
            lo = mid + 1
    return lo


PIECES = [
    "[",
    "]",
    "{",
    "}",
    ", ",
    ":",
    " ",
    "\n",
    "\n  ",
    "\n    ",
    "- ",
    "? ",
    ": ",
    "a",
    "b c",
    "#",
    "'",
    '"',
    "''",
    "\\",
    "|",
    ">",
    "&x ",
    "*x",
    "!t ",
    "\t",
    "-",
    "?",
    "---",
    "\n- ",
    "k: v\n",
    "k:\n",
    "  k: [a, 'b']\n",
    '- k: {a: "x"}\n',
    "k: a [b\n",
]


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_the_count_bounds_what_the_c_parser_nests(text: str) -> None:
    # the count is never below half of what the C parser opens (an indentless sequence or a
    # [a: b] pair adds a level its scanner does not open), and both ways of reading agree
    counted = _counted(text, True)
    assert _depth(text) <= 2 * counted + 1
    for limit in (counted - 1, counted, 7, 8):
        assert _scan(text, limit, True) == _scan(text, limit, False)
