"""engine.template_check locates a JSON syntax error of a template's output in the template the
same way on every Python: 3.13's json reports a trailing comma at the comma, earlier versions at
the bracket after it; both are traced to the bracket's template line."""

from __future__ import annotations

import json

from engine.template_check import _stop_line

OUT = '{\n  "model": "m",\n  "messages": [{"role": "user", "content": "hi"}],\n}\n'


def test_a_trailing_comma_as_python_3_13_reports_it() -> None:
    comma = OUT.index("],\n}") + 1
    exc = json.JSONDecodeError("Illegal trailing comma before end of object", OUT, comma)
    assert exc.lineno == 3  # where 3.13 stops: the line with the rendered value
    assert _stop_line(OUT, exc) == 4  # the "}" line, as the template has it


def test_a_trailing_comma_as_python_3_12_reports_it() -> None:
    bracket = OUT.index("}\n")
    exc = json.JSONDecodeError("Expecting property name enclosed in double quotes", OUT, bracket)
    assert _stop_line(OUT, exc) == 4


def test_this_pythons_own_report() -> None:
    try:
        json.loads(OUT)
    except json.JSONDecodeError as exc:
        assert _stop_line(OUT, exc) == 4
    else:
        raise AssertionError("the output is not JSON")
