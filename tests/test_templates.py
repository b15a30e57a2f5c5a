"""templates.py: every {{ hole }} is JSON, encoded exactly once."""

import json

from engine.templates import RequestTemplate


def test_tojson_filter_does_not_encode_twice() -> None:
    tpl = RequestTemplate("t", '{"a": {{ v | tojson }}, "b": {{ v }}, "s": {{ s | tojson }}}')
    assert json.loads(tpl.render(v=[1, "x"], s="s")) == {"a": [1, "x"], "b": [1, "x"], "s": "s"}
