"""Jinja request templates: source text in, a compiled renderer that yields a JSON body out, its work
and output bounded whatever the template says.

Templates run in a sandbox with ``StrictUndefined``; every ``{{ expression }}`` is emitted as JSON
(strings quoted and escaped), so a template is JSON with holes: ``"model": {{ model }}``.

Bounds. A template is at most ``MAX_SOURCE`` characters, nests brackets at most ``MAX_BRACKETS``
and blocks at most ``MAX_BLOCKS`` deep, with at most ``MAX_TAG_TOKENS`` tokens in one tag (deeper
trees overflow Jinja's parser or Python's compiler) — checked on its tokens before it is parsed.
None of its code runs while it compiles (Jinja's constant folding would run ``"a" * 2000000000``).
Each render has ``Limits`` (``engine.template_budget``): steps — loop iterations, calls, ``range()``
items — and the text it produces: every ``{{ }}``, every value an operator, filter, call, ``~`` or
slice makes, each loop iteration's text. Going over stops the render where it is, with
``OverLimit``; an operation that multiplies (``*``, ``**``, format widths, ``join``, ``replace``,
``indent``, ...) or gets an integer argument over ``MAX_ARG`` is refused before it runs.
``render`` runs within ``RUNTIME``, the compile-time test render within ``COMPILE_CHECK``.
"""

from __future__ import annotations

import inspect
import json
import sys
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

from engine.template_budget import (
    COMPILE_CHECK,
    COMPILING,
    RUNTIME,
    SIZED,
    SIZED_FILTERS,
    SMALL,
    Folding,
    Limits,
    OverLimit,
    expect,
    local,
    produced,
    size_filter,
    size_format,
    size_method,
    spend,
    too_much_text,
    weigh_args,
    weigh_binop,
)

__all__ = [
    "BUILTIN_DIR",
    "COMPILE_CHECK",
    "MAX_SOURCE",
    "RUNTIME",
    "Limits",
    "OverLimit",
    "RequestTemplate",
    "TemplateFailure",
    "compile_template",
]

BUILTIN_DIR = Path(__file__).parent / "templates"
MAX_SOURCE = 64 << 10  # characters in one template
MAX_BRACKETS = 20  # ( [ { nested in one tag
MAX_TAG_TOKENS = 200  # tokens in one {{ }} or {% %}
MAX_BLOCKS = 12  # {% for %} {% if %} {% macro %} ... nested

# One encoder for every value: ``json.dumps`` with non-default options builds a new
# ``JSONEncoder`` per call (~1 us each, several per render).
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_dumps_str = json.encoder.encode_basestring  # what ``_dumps`` does with a str (ensure_ascii off)


# -- the sandbox ---------------------------------------------------------------------------------

_BUILTIN_CALLABLES = (
    types.BuiltinFunctionType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with every operator and call that can make a big value weighed."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        weigh_binop(operator, left, right)
        return produced(self.binop_table[operator](left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"{__obj!r} is not safely callable")
        spend(work=1)  # also bounds macro and loop recursion
        if isinstance(__obj, _BUILTIN_CALLABLES):
            weigh_args(args, kwargs, 0)
            owner = getattr(__obj, "__self__", None)
            if type(owner) is str:
                args = size_method(owner, __obj.__name__, args, kwargs)
        else:
            wrapped = getattr(__obj, "__wrapped__", None)  # the sandbox's str.format wrapper
            name = getattr(wrapped, "__name__", "")
            if name in ("format", "format_map") and type(getattr(wrapped, "__self__", None)) is str:
                fmt = wrapped.__self__  # type: ignore[union-attr]
                if name == "format":
                    size_format(fmt, args, kwargs)
                else:
                    size_format(fmt, (), args[0] if args else {})
        return produced(__context.call(__obj, *args, **kwargs))


def _finalize(value: Any) -> str:
    # Strings and ints (most holes: model, max_tokens, ...) skip the encoder, which builds a C
    # iterencoder per non-string value; bool is not ``int`` here, so it still becomes true/false.
    kind = type(value)
    if kind is str:
        if len(value) > SMALL:
            spend(chars=len(value))
        return _dumps_str(value)
    if kind is int:
        return int.__repr__(value)
    if isinstance(value, Undefined):  # name the missing variable, not "not JSON serializable"
        value._fail_with_undefined_error()
    text: str = _dumps(value)
    if len(text) > SMALL:
        spend(chars=len(text))
    return text


def _guarded(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a filter) with its arguments weighed before and what it makes charged after (not
    what it returns unchanged: ``default``, ``first``, ...)."""
    first = 2 if hasattr(func, "jinja_pass_arg") else 1  # the context or environment, the value
    sized = name in SIZED_FILTERS

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if local.budget is COMPILING:  # Jinja folding a constant: leave it to the render
            raise Folding
        if len(args) != first or kwargs:
            weigh_args(args, kwargs, first)
            if len(args) < first:
                return func(*args, **kwargs)  # no value: let the filter say what is missing
        value = args[first - 1]
        if type(value) in SIZED and len(value) >= 4096:
            spend(work=len(value) >> 12)
        if sized:
            value = size_filter(name, value, args[first:], kwargs)
            args = (*args[: first - 1], value, *args[first:])
        result = func(*args, **kwargs)
        if result is not value and type(result) in SIZED and len(result) > SMALL:
            spend(chars=len(result))
        return result

    if hasattr(func, "jinja_pass_arg"):
        guarded.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    guarded.__name__ = guarded.__qualname__ = f"guarded_{name}"
    return guarded


def _lazy(func: Callable[..., Any]) -> bool:
    """A filter of nothing but its value that returns a generator (``items``): it takes no size
    and makes nothing itself, and what takes its items is charged for them — left unwrapped."""
    if not inspect.isgeneratorfunction(func):
        return False
    params = list(inspect.signature(func).parameters.values())[1 if hasattr(func, "jinja_pass_arg") else 0 :]
    return len(params) == 1 and params[0].kind is params[0].POSITIONAL_OR_KEYWORD


def _range(*args: int) -> range:
    r = range(*args)
    spend(work=len(r))
    return r


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    expect(n * max * 12, "lipsum")
    return str(generate_lorem_ipsum(n, html, min, max))


def _loop(iterable: Any, cost: int) -> Any:
    """The iterable of a ``{% for %}``: 1 step and ``cost`` characters an item, charged up front
    when it has a length, else item by item as the loop takes them."""
    if type(iterable) is types.GeneratorType or not hasattr(iterable, "__len__"):
        return _charged(iterable, cost)
    n = len(iterable)
    if n:
        spend(work=n, chars=n * cost)
    return iterable


def _charged(iterator: Any, cost: int) -> Any:
    for item in iterator:
        spend(work=1, chars=cost)
        yield item


def _weigh(value: Any) -> Any:
    """An operand of a comparison or test: 1 step per 4 KiB it will be read."""
    if type(value) in SIZED and len(value) >= 4096:
        spend(work=len(value) >> 12)
    return value


_ENV = _Sandbox(
    undefined=StrictUndefined,
    finalize=_finalize,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
    optimized=False,  # constant folding would run template code while it compiles
)
_ENV.filters["tojson"] = lambda value: value  # every {{ }} is encoded once already, by _finalize
_ENV.filters = {name: f if _lazy(f) else _guarded(name, f) for name, f in _ENV.filters.items()}
# names no template can write: the rewrite below puts these around loops, ~ and comparisons
_LOOP, _MADE, _READ = "loop budget", "made budget", "read budget"
_ENV.filters.update({_LOOP: _loop, _MADE: produced, _READ: _weigh})
_ENV.globals.update(range=_range, lipsum=_lipsum)


class _Budgeted(NodeTransformer):
    """Puts the budget filters into a parsed template: around every loop's iterable (and a
    recursive loop's ``loop(...)`` argument), every ``~`` and slice, every compared or tested
    operand."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        cost = _iteration_cost(node.body)
        node.iter = _wrap(node.iter, _LOOP, cost)
        if node.recursive:
            for call in _nodes(node.body, nodes.Call):
                if isinstance(call.node, nodes.Name) and call.node.name == "loop" and call.args:
                    call.args[0] = _wrap(call.args[0], _LOOP, cost)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Expr:
        self.generic_visit(node)
        return _wrap(node, _MADE)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Expr:
        self.generic_visit(node)  # a slice is a plain Python subscript, not the sandbox's getitem
        return _wrap(node, _MADE) if isinstance(node.arg, nodes.Slice) else node

    def visit_Compare(self, node: nodes.Compare) -> nodes.Compare:
        self.generic_visit(node)
        node.expr = _read(node.expr)
        for operand in node.ops:
            operand.expr = _read(operand.expr)
        return node

    def visit_Test(self, node: nodes.Test) -> nodes.Test:
        self.generic_visit(node)
        if node.args or node.kwargs:
            node.node = _read(node.node)
            node.args = [_read(a) for a in node.args]
        return node


def _nodes(body: list[nodes.Node], kind: type[Any]) -> list[Any]:
    """Every node of ``kind`` in ``body``, the body's own nodes included."""
    return [n for top in body for n in ([top] if isinstance(top, kind) else []) + list(top.find_all(kind))]


def _iteration_cost(body: list[nodes.Node]) -> int:
    """The text one iteration of ``body`` can emit without being charged one by one: its
    template text, and ``SMALL`` for each expression it writes out."""
    cost = 0
    for output in _nodes(body, nodes.Output):
        for child in output.nodes:
            cost += len(child.data) if isinstance(child, nodes.TemplateData) else SMALL
    return cost


def _wrap(node: nodes.Node, name: str, *args: int) -> nodes.Filter:
    return nodes.Filter(
        node, name, [nodes.Const(a, lineno=node.lineno) for a in args], [], None, None, lineno=node.lineno
    )


def _read(node: nodes.Expr) -> nodes.Expr:
    return node if isinstance(node, nodes.Const) else _wrap(node, _READ)


# -- compiling -----------------------------------------------------------------------------------

_OPENERS = frozenset({"for", "if", "macro", "call", "filter", "with", "block", "autoescape"})
_OPEN, _CLOSE = frozenset({"lparen", "lbracket", "lbrace"}), frozenset({"rparen", "rbracket", "rbrace"})


def _check_shape(source: str) -> None:
    """Refuse, with its line, a template too big or too deeply nested to compile safely: read
    on its tokens (Jinja's lexer does not recurse)."""
    if len(source) > MAX_SOURCE:
        raise TemplateFailure(f"the template is {len(source):,} characters long; at most {MAX_SOURCE:,}", 1)
    blocks = depth = count = 0
    keyword: str | None = None
    assigns = in_tag = False
    try:
        for token in _ENV.lexer.tokenize(source):
            kind = token.type
            if kind in ("block_begin", "variable_begin"):
                in_tag, count, depth, assigns = True, 0, 0, False
                keyword = "" if kind == "block_begin" else None
                continue
            if kind in ("block_end", "variable_end"):
                in_tag = False
                if keyword in _OPENERS or (keyword == "set" and not assigns):
                    blocks += 1
                    if blocks > MAX_BLOCKS:
                        raise TemplateFailure(f"blocks nest more than {MAX_BLOCKS} deep here", token.lineno)
                elif keyword and keyword.startswith("end"):
                    blocks -= 1
                continue
            if not in_tag:
                continue
            count += 1
            if count > MAX_TAG_TOKENS:
                raise TemplateFailure(f"a tag of more than {MAX_TAG_TOKENS} tokens; split it", token.lineno)
            if keyword == "":
                keyword = token.value if kind == "name" else None
            if kind in _OPEN:
                depth += 1
                if depth > MAX_BRACKETS:
                    raise TemplateFailure(f"brackets nest more than {MAX_BRACKETS} deep here", token.lineno)
            elif kind in _CLOSE:
                depth -= 1
            elif kind == "assign" and depth == 0:
                assigns = True
    except TemplateSyntaxError as exc:
        raise TemplateFailure(str(exc), exc.lineno) from None


def _compile(source: str) -> Template:
    _check_shape(source)
    local.budget = COMPILING
    try:
        tree = _Budgeted().visit(_ENV.parse(source))
        return Template.from_code(_ENV, _ENV.compile(tree), _ENV.make_globals(None), None)
    except TemplateError as exc:
        raise TemplateFailure(str(exc), getattr(exc, "lineno", None)) from None
    except (RecursionError, MemoryError, SyntaxError, ValueError) as exc:  # past the checks
        raise TemplateFailure(f"cannot compile the template: {type(exc).__name__}", None) from None
    finally:
        local.budget = RUNTIME


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
        template = _compile(source)
        # A plain dict instead of Jinja's ChainMap over the environment's globals (which never
        # change after import): every render copies the globals into its context, and copying
        # a ChainMap goes through Python-level __iter__/__getitem__ (~7 us of a ~23 us render).
        template.globals = dict(template.globals)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "_template", template)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"RequestTemplate is immutable (cannot set {name!r})")

    def render(self, limits: Limits = RUNTIME, /, **context: Any) -> str:
        """The body for ``context``; raises ``OverLimit`` past ``limits``."""
        template = self._template
        local.budget = limits
        try:
            text = "".join(template.root_render_func(template.new_context(context)))
        except Exception:
            template.environment.handle_exception()  # re-raised with the template's lines
        if len(text) > limits.chars:
            raise too_much_text(limits)
        return text

    def render_checked(self, **context: Any) -> Any:
        """Render within ``COMPILE_CHECK`` and parse; raise ``TemplateFailure`` (with the template
        line) on any failure."""
        try:
            text = self.render(COMPILE_CHECK, **context)
        except OverLimit as exc:
            raise TemplateFailure(str(exc), _jinja_line()) from None
        except TemplateError as exc:
            raise TemplateFailure(str(exc), getattr(exc, "lineno", None) or _jinja_line()) from None
        except Exception as exc:  # a sandbox violation or a filter failing on sample data
            raise TemplateFailure(f"{type(exc).__name__}: {exc}", _jinja_line()) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateFailure(
                f"does not render valid JSON: {exc.msg} at output line {exc.lineno} column {exc.colno}", None
            ) from None

    def __repr__(self) -> str:
        return f"RequestTemplate({self.name!r})"


def _jinja_line() -> int | None:
    """The template line of the frame Jinja was executing when the current exception was raised."""
    tb = sys.exc_info()[2]
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == "<template>":
            line = lineno
    return line


def compile_template(name: str, source: str) -> RequestTemplate:
    return RequestTemplate(name, source)
