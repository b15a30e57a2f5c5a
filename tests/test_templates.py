"""templates.py: every {{ hole }} is JSON, encoded exactly once; whatever a template says, its
compile and its renders do bounded work and make bounded output, and a template that would not is
a located failure (template line), never a hang, a MemoryError or a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import engine.templates as templates
from engine.providers import get_kind
from engine.request import SAMPLE_REQUEST
from engine.templates import (
    COMPILE_CHECK,
    MAX_SOURCE,
    RUNTIME,
    Limits,
    OverLimit,
    RequestTemplate,
    TemplateFailure,
)

ROOT = Path(__file__).parents[1]
CONTEXT = get_kind("openai").context({**SAMPLE_REQUEST, "model": "m"}, "m", False)


def test_tojson_filter_does_not_encode_twice() -> None:
    tpl = RequestTemplate("t", '{"a": {{ v | tojson }}, "b": {{ v }}, "s": {{ s | tojson }}}')
    assert json.loads(tpl.render(v=[1, "x"], s="s")) == {"a": [1, "x"], "b": [1, "x"], "s": "s"}


# name -> (template, line of the failure, what the failure says). Each of these hung or ate the
# machine before (`{{ "a" * 2000000000 }}` took 50 s and 7.5 GB, then passed), so they run in a
# child process with a memory limit and a timeout: a regression fails the test, it cannot hang
# the suite.
HOSTILE: dict[str, tuple[str, int, str]] = {
    "nested ranges": (
        '{"a": 1}\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n',
        2,
        "more than 100,000 steps",
    ),
    "power": ('{\n  "a": {{ 7 ** 30000000 }}\n}\n', 2, "** would make an integer of more than 4096"),
    "repetition": ('{\n  "a": {{ "a" * 2000000000 }}\n}\n', 2, "* would make 2,000,000,000 characters"),
    "list repetition": ('{\n  "a": {{ [1] * 2000000000 }}\n}\n', 2, "* would make 2,000,000,000"),
    "squaring": (
        "{% set ns = namespace(x=3) %}\n{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}"
        '{% endfor %}\n{"a": 1}\n',
        2,
        "integer of more than 4096 bits",
    ),
    "center filter": (
        '{\n  "a": {{ "x"|center(2000000000) }}\n}\n',
        2,
        "an argument of 2,000,000,000 is over the template limit",
    ),
    "zfill method": ('{\n  "a": {{ "1".zfill(2000000000) }}\n}\n', 2, "an argument of 2,000,000,000"),
    "ljust under the argument limit": (
        '{\n  "a": {{ "x".ljust(999999) ~ "x".ljust(999999) }}\n}\n',
        2,
        "produced more than 1 MiB",
    ),
    "format width": ('{\n  "a": {{ "{:9999999999}".format(1) }}\n}\n', 2, "format would make 10,000,000,0"),
    "format width from an argument": (
        '{\n  "a": {{ "{:{}}".format(1, 900000000) }}\n}\n',
        2,
        "format would make 900,000,00",
    ),
    "printf width": ('{\n  "a": {{ "%9999999d" % 1 }}\n}\n', 2, "% would make 10,000,00"),
    "printf * width": ('{\n  "a": {{ "%*d" % (900000000, 1) }}\n}\n', 2, "% would make 900,000,00"),
    "format filter": ('{\n  "a": {{ "%9999999d"|format(1) }}\n}\n', 2, "format would make 10,000,0"),
    "lipsum": ('{\n  "a": {{ lipsum(n=100000) }}\n}\n', 2, "lipsum would make 120,000,000"),
    "indent": (
        '{% set s = "\\n" * 100000 %}\n{"a": {{ s|indent(1000) }}}\n',
        2,
        "indent would make 100,101,000",
    ),
    "wordwrap": (
        '{\n  "a": {{ ("a" * 100000)|wordwrap(1, wrapstring="x" * 100) }}\n}\n',
        2,
        "wordwrap would make",
    ),
    "expandtabs": (
        '{% set s = "\\t" * 100000 %}\n{"a": {{ s.expandtabs(100000) }}}\n',
        2,
        "expandtabs would make",
    ),
    "replace filter": (
        '{% set s = "a" * 100000 %}\n{"a": {{ s|replace("a", "b" * 1000) }}}\n',
        2,
        "replace would make 100,000,000",
    ),
    "replace method": (
        '{% set s = "a" * 100000 %}\n{"a": {{ s.replace("a", "b" * 1000) }}}\n',
        2,
        "replace would make 100,000,000",
    ),
    "join filter": (
        '{% set s = "a" * 100000 %}\n{"a": {{ ([s] * 100000)|join }}}\n',
        2,
        "join would make 10,000,000,000",
    ),
    "join method": (
        '{% set s = "a" * 100000 %}\n{"a": {{ "".join([s] * 100000) }}}\n',
        2,
        "join would make 10,000,000,000",
    ),
    "round": ('{\n  "a": {{ 7|round(-900000) }}\n}\n', 2, "round to -900,000 digits"),
    "list of a long string": (
        '{% set s = "a" * 900000 %}\n{"a": {{ (s|list)|length }}}\n',
        2,
        "list would make 900,000",
    ),
    "doubling with ~": (
        '{% set ns = namespace(s="ab") %}\n{% for i in range(60) %}'
        '{% set ns.s = ns.s ~ ns.s %}{% endfor %}\n{"a": 1}\n',
        2,
        "produced more than 1 MiB",
    ),
    "doubling with +": (
        '{% set ns = namespace(s="ab") %}\n{% for i in range(60) %}'
        '{% set ns.s = ns.s + ns.s %}{% endfor %}\n{"a": 1}\n',
        2,
        "+ would make",
    ),
    "doubling with a block set": (
        '{% set ns = namespace(s="ab") %}\n{% for i in range(60) %}'
        "{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}"
        '{% endfor %}\n{"a": 1}\n',
        2,
        "produced more than 1 MiB",
    ),
    "nested loops over a list": (
        "{% set L = range(1000)|list %}\n{% for a in L %}{% for b in L %}"
        '{% for c in L %}{% endfor %}{% endfor %}{% endfor %}\n{"a": 1}\n',
        2,
        "more than 100,000 steps",
    ),
    "macro fan-out": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
        '{% endmacro %}\n{"a": "{{ f(40) }}"}\n',
        1,
        "produced more than 1 MiB",
    ),
    "recursive loop": (
        "{% for x in [1] recursive %}\n{{ loop([1, 1]) }}\n{% endfor %}\n",
        2,
        "RecursionError",
    ),
    "text in a loop": (
        "{% for i in range(2000) %}\n" + "x" * 1000 + "\n{% endfor %}\n",
        1,
        "produced more than 1 MiB",
    ),
    "slices in a loop": (
        '{% set s = "a" * 1000000 %}\n{% for i in range(90000) %}{% set t = s[1:] %}{% endfor %}\n{"a": 1}\n',
        2,
        "more than 100,000",
    ),
    "comparisons in a loop": (
        '{% set s = "a" * 1000000 %}\n{% for i in range(90000) %}'
        '{% if s == s ~ "" %}{% endif %}{% endfor %}\n{"a": 1}\n',
        2,
        "more than 100,000 steps",
    ),
}

_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from engine.providers import get_kind
from engine.request import SAMPLE_REQUEST
from engine.templates import RequestTemplate, TemplateFailure
ctx = get_kind("openai").context({**SAMPLE_REQUEST, "model": "m"}, "m", False)
out = {}
for name, source in json.load(sys.stdin).items():
    try:
        RequestTemplate(name, source).render_checked(**ctx)
        out[name] = [None, "rendered"]
    except TemplateFailure as exc:
        out[name] = [exc.line, str(exc)]
    except BaseException as exc:
        out[name] = [None, f"escaped: {type(exc).__name__}: {exc}"]
print(json.dumps(out))
"""


def test_hostile_templates_fail_at_their_line_with_bounded_work() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
        input=json.dumps({name: src for name, (src, _, _) in HOSTILE.items()}),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    wrong = {
        name: results[name]
        for name, (_, line, says) in HOSTILE.items()
        if results[name][0] != line or says not in results[name][1]
    }
    assert wrong == {}


def test_engine_check_of_the_three_templates_of_the_issue(tmp_path: Path) -> None:
    for name, key in (("ranges.j2", "nested ranges"), ("power.j2", "power"), ("repeat.j2", "repetition")):
        (tmp_path / name).write_text(HOSTILE[key][0])
    (tmp_path / "routes.yaml").write_text("""\
version: 1
providers:
  a: {kind: openai, api_key: k, models: [m], template: ranges.j2}
  b: {kind: openai, api_key: k, models: [m], template: power.j2}
  c: {kind: openai, api_key: k, models: [m], template: repeat.j2}
routes:
  - {match: {model: a}, to: a/m}
  - {match: {model: b}, to: b/m}
  - {match: {}, to: c/m}
""")
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "check", str(tmp_path / "routes.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "ranges.j2:2:1: error: template error: the render took more than 100,000 steps" in proc.stderr
    assert "power.j2:2:1: error: template error: ** would make an integer" in proc.stderr
    assert "repeat.j2:2:1: error: template error: * would make 2,000,000,000 characters" in proc.stderr
    assert proc.stderr.endswith("3 errors\n")


# -- shapes refused before Jinja's parser (recursive) or Python's compiler sees them ------------


@pytest.mark.parametrize(
    "source, line, says",
    [
        ('{\n"a": {{ ' + "(" * 5000 + "1" + ")" * 5000 + " }}}", 2, "brackets nest more than 20 deep"),
        ('{\n"a": {{ ' + "[" * 5000 + "1" + "]" * 5000 + " }}}", 2, "brackets nest more than 20 deep"),
        ('{\n"a": {{ 1' + " + 1" * 5000 + " }}}", 2, "a tag of more than 200 tokens"),
        ('{\n"a": {{ x' + ".a" * 150 + " }}}", 2, "a tag of more than 200 tokens"),
        ('{\n"a": {{ 1' + "|abs" * 5000 + " }}}", 2, "a tag of more than 200 tokens"),
        ("{\n" + "{% if 1 %}" * 3000 + "{% endif %}" * 3000 + "}", 2, "blocks nest more than 12 deep"),
        ("{\n" + "{% for i in [1] %}\n" * 30 + "{% endfor %}" * 30 + "}", 14, "blocks nest more than 12"),
        ("{% set x %}" * 13 + "{% endset %}" * 13 + "{}", 1, "blocks nest more than 12 deep"),
        ('{"a": 1}' + " " * MAX_SOURCE, 1, f"at most {MAX_SOURCE:,}"),
        ('{\n"a": {{ 1 + }}}', 2, "unexpected"),
    ],
)
def test_too_deep_or_too_big_is_refused_before_it_is_parsed(source: str, line: int, says: str) -> None:
    with pytest.raises(TemplateFailure) as info:
        RequestTemplate("t", source)
    assert info.value.line == line and says in str(info.value)


def test_what_fits_the_shape_limits_compiles_even_from_a_deep_stack() -> None:
    sources = [
        "{{ " + "(" * 20 + "1" + ")" * 20 + " }}",
        "{{ x" + ".a" * 99 + " }}",
        "{{ 1" + " + 1" * 99 + " }}",
        "{{ " + "not " * 199 + "1 }}",
        "{% for i in [1] %}" * 12 + "{% endfor %}" * 12,
        "{% if 1 %}" * 12 + "{{ " + "(" * 20 + "1" + ")" * 20 + " }}" + "{% endif %}" * 12,
    ]

    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        else:
            for source in sources:
                RequestTemplate("t", source)

    deep(400)


def test_a_huge_template_file_is_refused_unread(tmp_path: Path) -> None:
    from engine.template_check import TemplateCheck

    (tmp_path / "big.j2").write_bytes(b" " * (4 * MAX_SOURCE + 1))
    _, tpl, failure = TemplateCheck(tmp_path).check("openai", "big.j2", "m")
    assert tpl is None and not isinstance(failure, str) and failure is not None
    assert (failure.file, failure.line) == ("big.j2", 1) and "bytes; at most" in failure.message


def test_no_template_code_runs_while_it_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def spy(value: str, width: int) -> str:
        calls.append(value)
        return value.center(width)

    monkeypatch.setitem(templates._ENV.filters, "spy", templates._guarded("spy", spy))
    tpl = RequestTemplate("t", '{"a": {{ "x"|spy(5) }}, "b": {{ "a" * 3 }}}')
    assert calls == []  # Jinja's constant folding would have run the filter (and the *)
    assert tpl.render() == '{"a": "  x  ", "b": "aaa"}' and calls == ["x"]


# -- the budget of a render ----------------------------------------------------------------------


def _over(source: str, limits: Limits, **context: Any) -> str:
    with pytest.raises(OverLimit) as info:
        RequestTemplate("t", source).render(limits, **context)
    return str(info.value)


def test_loop_iterations_calls_and_range_items_are_steps() -> None:
    assert "more than 10 steps" in _over(
        "{% for i in xs %}{% endfor %}", Limits(10, 10_000), xs=list(range(11))
    )
    assert "more than 10 steps" in _over(
        "{% for k, v in d|items %}{% endfor %}", Limits(10, 10_000), d=dict.fromkeys(range(11))
    )
    assert "more than 10 steps" in _over("{{ range(11)|length }}", Limits(10, 10_000))
    assert "more than 10 steps" in _over(
        "{% macro m() %}{% endmacro %}{% for i in range(5) %}{{ m() }}{{ m() }}{% endfor %}",
        Limits(10, 10_000),
    )
    assert (
        RequestTemplate("t", "{% for i in xs %}{% endfor %}").render(Limits(10, 10_000), xs=list(range(10)))
        == ""
    )


def test_text_is_charged_where_it_is_made() -> None:
    big = "x" * 2000
    assert "more than 1,000 characters" in _over("{{ s }}", Limits(100, 1000), s=big)  # {{ }}
    assert "more than 1,000 characters" in _over("{% set t = s ~ s %}", Limits(100, 1000), s=big[:600])
    assert "more than 1,000 characters" in _over(  # the text of a loop's body, per iteration
        "{% for i in range(5) %}" + "y" * 300 + "{% endfor %}", Limits(100, 1000)
    )
    assert "more than 1,000 characters" in _over("{% set t = s[1:] %}", Limits(100, 1000), s=big)
    assert "* would make" in _over("{{ s * 3 }}", Limits(100, 1000), s="ab" * 200)


def test_runtime_renders_are_bounded_generously_and_the_check_render_tightly() -> None:
    tpl = RequestTemplate("t", '{"content": {{ content }}}')
    big = "A" * (2 << 20)  # a 2 MiB base64 image is an ordinary request at runtime
    assert json.loads(tpl.render(content=big)) == {"content": big}
    with pytest.raises(TemplateFailure, match="more than 1 MiB"):
        tpl.render_checked(content=big)
    assert RUNTIME.chars >= 32 << 20 and COMPILE_CHECK.chars <= 1 << 20
    with pytest.raises(OverLimit, match="more than 64 MiB"):
        tpl.render(content="A" * ((64 << 20) + 1))


def test_a_template_passing_the_check_is_still_bounded_for_each_request() -> None:
    tpl = RequestTemplate("t", '{"n": {{ max_tokens }}}{% for i in range(max_tokens) %}{% endfor %}')
    assert tpl.render_checked(**CONTEXT) == {"n": 16}
    with pytest.raises(OverLimit, match="more than 1,000,000 steps"):
        tpl.render(**{**CONTEXT, "max_tokens": 2_000_000})


def test_ordinary_templates_render_as_jinja_renders_them() -> None:
    source = """\
{% macro greet(name) %}hi {{ name }}{% endmacro %}
{% set names = messages|map(attribute="role")|join(",") %}
{"parts": [{% for m in messages if m.role != "system" %}
{"role": {{ m.role }}, "text": {{ m.content|trim|replace("\\n", " ") }}}{% if not loop.last %},{% endif %}
{% endfor %}],
 "names": {{ names }}, "title": {{ ("%s-%03d" % (model, 7))|upper ~ "!" }}, "hi": {{ greet("x") }},
 "tools": {{ tools|length if tools else 0 }}, "wide": {{ "{:>6}".format(max_tokens) }},
 "ix": {{ range(3)|list }}, "sorted": {{ [3, 1, 2]|sort }}, "pad": {{ "ab".center(6) }},
 "cut": {{ (model * 3)[1:4] }}, "same": {{ model == "m" and "m" in model }}}"""
    assert RequestTemplate("t", source).render_checked(**CONTEXT) == {
        "parts": [{"role": "user", "text": 'Say "hi" \\ and <b>bye</b>'}],
        "names": "system,user",
        "title": "M-007!",
        "hi": 'hi "x"',
        "tools": 1,
        "wide": "    16",
        "ix": [0, 1, 2],
        "sorted": [1, 2, 3],
        "pad": "  ab  ",
        "cut": "mm",
        "same": True,
    }
