"""What a template render may do and what it has done so far, and what an operation is about to
make: the accounting behind ``engine.templates`` (no Jinja here).

A render has ``Limits``: ``work`` steps (loop iterations, calls, ``range()`` items, and 1 per 4 KiB
an operation reads) and ``chars`` characters of text produced. The render running on a thread
keeps its counters in ``local.budget`` (a ``Limits`` until its first charge makes it a
``Budget``); ``spend`` adds to them and raises ``OverLimit`` past a limit. ``expect`` refuses
before it runs an operation that would make more than the render has left; the ``size_*`` and
``weigh_*`` functions say what the multiplying operations would make: ``*``, ``+``, ``%`` and
``**``, format widths, ``join``, ``replace``, ``indent``, ``wordwrap``, ``expandtabs``,
``translate``, ``round`` — and ``weigh_args`` refuses an integer argument over ``MAX_ARG``.
"""

from __future__ import annotations

import re
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COMPILE_CHECK",
    "COMPILING",
    "MAX_ARG",
    "MAX_BITS",
    "RUNTIME",
    "SIZED",
    "SIZED_FILTERS",
    "SMALL",
    "Budget",
    "Folding",
    "Limits",
    "OverLimit",
    "budget",
    "expect",
    "local",
    "produced",
    "size_filter",
    "size_format",
    "size_method",
    "spend",
    "too_much_text",
    "weigh_args",
    "weigh_binop",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one render may do: ``work`` steps, ``chars`` characters of text produced."""

    work: int
    chars: int


COMPILE_CHECK = Limits(work=100_000, chars=1 << 20)  # the test render of `engine check`
RUNTIME = Limits(work=1_000_000, chars=64 << 20)  # a request's (bodies carry base64 images)
COMPILING = Limits(0, 0)  # no template code runs while one compiles
MAX_ARG = 1_000_000  # an integer argument of a filter or builtin call
MAX_BITS = 4096  # an integer made by ** or *, digits of round()
SMALL = 256  # values up to this long are charged through their loop, not one by one
SIZED = frozenset({str, bytes, list, tuple, dict, set, frozenset})


class OverLimit(Exception):
    """A render went over its ``Limits``, or an operation would have made too much."""


class Folding(Exception):
    """Template code asked to run while its template compiles (Jinja folding a constant): Jinja
    leaves that expression to the render."""


class Budget:
    __slots__ = ("chars", "limits", "work")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.work = self.chars = 0


class _Local(threading.local):
    budget: Budget | Limits = RUNTIME


local = _Local()


def budget() -> Budget:
    """The counters of the render running on this thread."""
    b = local.budget
    if isinstance(b, Budget):
        return b
    if b is COMPILING:
        raise Folding
    counters = local.budget = Budget(b)
    return counters


def spend(work: int = 0, chars: int = 0) -> None:
    b = budget()
    b.work += work
    b.chars += chars
    limits = b.limits
    if b.work > limits.work:
        raise OverLimit(
            f"the render took more than {limits.work:,} steps (loop iterations, "
            "calls, range items): a loop or recursion without bound?"
        )
    if b.chars > limits.chars:
        raise too_much_text(limits)


def too_much_text(limits: Limits) -> OverLimit:
    return OverLimit(f"the render produced more than {_size(limits.chars)} of text")


def expect(n: int, what: str) -> None:
    """Refuse, before it runs, an operation that would make ``n`` characters (or items) more than
    the render has left."""
    if n > SMALL:
        b = budget()
        left = b.limits.chars - b.chars
        if n > left:
            raise OverLimit(
                f"{what} would make {n:,} characters, more than the "
                f"{_size(max(left, 0))} this render has left"
            )


def _size(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n:,} characters"


def produced(value: Any) -> Any:
    """Charge a value an operation made (when it is longer than ``SMALL``); returns it."""
    if type(value) in SIZED:
        n = len(value)
        if n > SMALL:
            spend(chars=n)
    return value


def weigh_args(args: tuple[Any, ...], kwargs: Mapping[str, Any], first: int) -> None:
    """1 step per 4 KiB of sized arguments from ``first`` on (what the call will read), and
    integers among them (and keyword ones) at most ``MAX_ARG``."""
    work = 0
    for a in (*args[first:], *kwargs.values()):
        kind = type(a)
        if kind in SIZED:
            work += len(a) >> 12
        elif kind is int and not -MAX_ARG <= a <= MAX_ARG:
            raise OverLimit(f"an argument of {a:,} is over the template limit of {MAX_ARG:,}")
    if work:
        spend(work=work)


def weigh_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left operator right`` (``**``, ``*``, ``%``, ``+``) before it makes too much."""
    if operator == "**":
        if (
            type(left) is int
            and type(right) is int
            and right > 0
            and abs(left) > 1
            and left.bit_length() * right > MAX_BITS
        ):
            raise OverLimit(f"** would make an integer of more than {MAX_BITS} bits")
    elif operator == "*":
        if type(left) is int and type(right) is int:
            if left.bit_length() + right.bit_length() > MAX_BITS:
                raise OverLimit(f"* would make an integer of more than {MAX_BITS} bits")
            return
        seq, times = (left, right) if type(right) is int else (right, left)
        if type(seq) in SIZED and type(times) is int:
            expect(len(seq) * max(times, 0), "*")
    elif operator == "%":
        if type(left) is str:
            expect(_printf_size(left, right), "%")
    elif type(left) in SIZED and type(right) is type(left):
        expect(len(left) + len(right), "+")


# -- what the multiplying filters and methods would make ------------------------------------------

_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")
_DIGITS = re.compile(r"\d+")
_formatter_parse = string.Formatter().parse


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= 18 else 10**18


def _printf_size(fmt: str, args: Any) -> int:
    values = (
        tuple(args.values()) if isinstance(args, Mapping) else (args if isinstance(args, tuple) else (args,))
    )
    star = max((abs(v) for v in values if type(v) is int), default=0)
    size = len(fmt) + sum(len(v) for v in values if type(v) is str)
    for m in _PRINTF.finditer(fmt):
        for width in m.groups():
            size += star if width == "*" else _number(width) if width else 0
    return size


def size_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse ``fmt.format(*args, **kwargs)`` that would make too much (its widths)."""
    values = (*args, *kwargs.values())
    size = len(fmt) + sum(len(v) for v in values if type(v) is str)
    for _, _, spec, _ in _formatter_parse(fmt):
        if spec:
            if "{" in spec:  # a width from the arguments
                size += max((abs(v) for v in values if type(v) is int), default=0)
            size += max((_number(d) for d in _DIGITS.findall(spec)), default=0)
    expect(size, "format")


def _join_size(items: list[Any], sep: str) -> int:
    return len(sep) * max(len(items) - 1, 0) + sum(len(x) for x in items if type(x) is str)


def _replace_size(s: str, old: str, new: str, count: int = -1) -> int:
    hits = s.count(old) if old else len(s) + 1
    if count >= 0:
        hits = min(hits, count)
    return len(s) + hits * max(len(new) - len(old), 0)


def _named(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], names: tuple[str, ...], defaults: tuple[Any, ...]
) -> list[Any]:
    """A filter's arguments after the value, by name."""
    out = list(args[: len(names)]) + list(defaults[len(args) :])
    for i, name in enumerate(names):
        if name in kwargs:
            out[i] = kwargs[name]
    return out


SIZED_FILTERS = frozenset({"join", "replace", "indent", "wordwrap", "format", "round", "list"})


def size_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Refuse filter ``name`` (one of ``SIZED_FILTERS``) on ``value`` that would make too much;
    returns the value to run it on (``join``'s items read into a list, counted once)."""
    if name == "round":
        (digits,) = _named(args, kwargs, ("precision",), (0,))
        if type(digits) is int and abs(digits) > MAX_BITS:  # round(7, -900000): 10 ** 900000
            raise OverLimit(f"round to {digits:,} digits: at most {MAX_BITS}")
        return value
    if name == "list":
        if type(value) in SIZED:
            expect(len(value), "list")  # a pointer an item: 8 bytes for each character of a str
        return value
    if name == "join":
        items = value if isinstance(value, (list, tuple, str)) else list(value)
        (sep,) = _named(args, kwargs, ("d",), ("",))
        if type(sep) is str:
            expect(_join_size(list(items), sep), "join")
        return items
    if type(value) is not str:
        return value
    if name == "replace":
        old, new, count = _named(args, kwargs, ("old", "new", "count"), ("", "", None))
        if type(old) is str and type(new) is str:
            expect(_replace_size(value, old, new, count if type(count) is int else -1), "replace")
    elif name == "indent":
        (width,) = _named(args, kwargs, ("width",), (4,))
        per = len(width) if type(width) is str else width if type(width) is int else 0
        expect(len(value) + (value.count("\n") + 1) * per, "indent")
    elif name == "wordwrap":
        width, _, wrap = _named(args, kwargs, ("width", "break_long_words", "wrapstring"), (79, True, None))
        lines = len(value) // max(width if type(width) is int else 1, 1) + 1
        expect(len(value) + lines * (len(wrap) if type(wrap) is str else 1), "wordwrap")
    elif name == "format":
        expect(_printf_size(value, kwargs or args), "format")
    return value


def size_method(s: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Refuse method ``name`` of the str ``s`` that would make too much; returns its arguments
    (``join``'s items read into a list, counted once)."""
    if name == "join" and len(args) == 1:
        items = args[0] if isinstance(args[0], (list, tuple)) else list(args[0])
        expect(_join_size(list(items), s), "join")
        return (items,)
    if name == "replace" and len(args) >= 2 and type(args[0]) is str and type(args[1]) is str:
        count = args[2] if len(args) > 2 and type(args[2]) is int else -1
        expect(_replace_size(s, args[0], args[1], count), "replace")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        expect(len(s) + s.count("\t") * (size if type(size) is int else 0), "expandtabs")
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if type(v) is str), default=1)
        expect(len(s) * longest, "translate")
    return args
