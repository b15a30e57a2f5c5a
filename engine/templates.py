"""Jinja request templates: source text in, a compiled renderer that yields a JSON body out.

Templates run in a sandbox with ``StrictUndefined``; every ``{{ expression }}`` is emitted as JSON
(strings quoted and escaped), so a template is JSON with holes: ``"model": {{ model }}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["BUILTIN_DIR", "RequestTemplate", "TemplateFailure", "compile_template"]

BUILTIN_DIR = Path(__file__).parent / "templates"

# One encoder for every value: ``json.dumps`` with non-default options builds a new
# ``JSONEncoder`` per call (~1 us each, several per render).
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_dumps_str = json.encoder.encode_basestring  # what ``_dumps`` does with a str (ensure_ascii off)


def _finalize(value: Any) -> str:
    # Strings and ints (most holes: model, max_tokens, ...) skip the encoder, which builds a C
    # iterencoder per non-string value; bool is not ``int`` here, so it still becomes true/false.
    kind = type(value)
    if kind is str:
        return _dumps_str(value)
    if kind is int:
        return int.__repr__(value)
    if isinstance(value, Undefined):  # name the missing variable, not "not JSON serializable"
        value._fail_with_undefined_error()
    return _dumps(value)




_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined,
    finalize=_finalize,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["tojson"] = lambda value: value  # every {{ }} is encoded once already, by _finalize


class TemplateFailure(Exception):
    """A template failed to compile or render; ``line`` is the template line when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class RequestTemplate:
    """A compiled request template; ``render(**context)`` returns the JSON body text."""

    __slots__ = ("_template", "name", "source")
    _template: Template
    name: str
    source: str

    def __init__(self, name: str, source: str) -> None:
        try:
            template = _ENV.from_string(source)
        except TemplateError as exc:
            raise TemplateFailure(str(exc), getattr(exc, "lineno", None)) from None
        # A plain dict instead of Jinja's ChainMap over the environment's globals (which never
        # change after import): every render copies the globals into its context, and copying
        # a ChainMap goes through Python-level __iter__/__getitem__ (~7 us of a ~23 us render).
        template.globals = dict(template.globals)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "_template", template)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"RequestTemplate is immutable (cannot set {name!r})")

    def render(self, **context: Any) -> str:
        text: str = self._template.render(context)
        return text

    def render_checked(self, **context: Any) -> Any:
        """Render and parse; raise ``TemplateFailure`` (with the template line) on any failure."""
        try:
            text = self._template.render(context)
        except TemplateError as exc:
            raise TemplateFailure(str(exc), getattr(exc, "lineno", None) or _jinja_line()) from None
        except Exception as exc:  # a sandbox violation or a filter failing on sample data
            raise TemplateFailure(f"{type(exc).__name__}: {exc}", _jinja_line()) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateFailure(
                f"does not render valid JSON: {exc.msg} at output line {exc.lineno} "
                f"column {exc.colno}", None
            ) from None

    def __repr__(self) -> str:
        return f"RequestTemplate({self.name!r})"


def _jinja_line() -> int | None:
    """The template line of the frame Jinja was executing when the current exception was raised."""
    import sys
    import traceback

    tb = sys.exc_info()[2]
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == "<template>":
            line = lineno
    return line


def compile_template(name: str, source: str) -> RequestTemplate:
    return RequestTemplate(name, source)
