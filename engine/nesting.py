"""YAML text in, the first place where it nests deeper than a limit out (or None) — read before any
YAML parser sees the text.

ruamel's C composer recurses once per nesting level and overflows the C stack (a segfault) at
20,000–40,000 levels, which a 40 KB file reaches with ``[`` alone. This scan follows the token rules
of that parser (libyaml's) far enough to count what nests — flow ``[``/``{``, block collections by
indentation, compact ``- - -`` and ``? ? ?`` on one line, ``key:`` opening a mapping — and to skip
what does not: quoted scalars, comments, plain scalars (also over several lines), block scalars
(``|``/``>``), anchors, aliases and tags. What it counts is what libyaml's scanner opens (flow levels
plus indentation levels): at least half of the real depth (an indentless ``key:\\n- item``
sequence or a ``[a: b]`` pair adds a level the scanner does not open), and no more than it, up to
where the parser would stop at a syntax error.

One pass, no recursion. Most lines of a config (``key: value``, ``- key: {a: [b]}``) are read whole
by one regular expression; anything else goes token by token.
"""

from __future__ import annotations

import re

__all__ = ["too_deep"]

_BREAKS = re.compile("\r\n?|[\x85\u2028\u2029]")  # libyaml's other line breaks
_BREAK_CHARS = ("\r", "\x85", "\u2028", "\u2029")
_SKIP = re.compile(r"(?:[ \t]*+(?:#[^\n]*+)?\n)*+[ \t]*+(?:#[^\n]*+)?")  # blanks, comments, breaks
_SINGLE = re.compile(r"'[^']*+(?:''[^']*+)*+'?")
_DOUBLE = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.S)
_ANCHOR = re.compile(r"[0-9A-Za-z_-]*+")  # libyaml's anchor and alias names
_TAG = re.compile(r"[^ \t\n]*+")
# One line of a plain scalar: in block context it ends at ": " (or ":" at the end) and before " #";
# in flow context also at any of ",:?[]{}" (libyaml ends it there; ':' or '?' inside is an error).
_PLAIN_BLOCK = re.compile(r"(?:[^\n: \t]++|:(?=[^ \t\n])|[ \t]++(?=[^ \t\n#]))*+")
_PLAIN_FLOW = re.compile(r"(?:[^\n,:?\[\]{} \t]++|[ \t]++(?=[^ \t\n#,:?\[\]{}]))*+")
_LEAD = re.compile(r"(?:[ \t]*+\n)*+([ \t]*+)")  # blank lines, then the next line's indentation
_HEADER = re.compile(r"[+-]?([1-9]?)")


def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Whole block lines in the shapes configs are made of.

    ``_LINE``: ``- `` indicators, an optional plain ``key:``, then nothing, a one-line plain or
    quoted scalar, or a flow collection closed on the line, at most 3 deep, holding plain text and
    quoted scalars right after an indicator; a comment; then the next line's indentation, past
    blank and comment lines (unless that line starts with a tab or there is none).
    ``_SIBLINGS`` (from a line start): lines at one indentation that open nothing there —
    ``key:``, ``key: value``, ``- value`` — each followed by another such line. ``_ITEMS`` (from
    the start of a ``- key: ...`` line, already read): the ``- key: value`` and ``key: value``
    lines of further items of that sequence, each followed by another. Possessive quantifiers
    throughout: a line that does not fit fails in linear time."""
    start = r"""[^\s\-?:,\[\]{}#&*!|>'"%@`]"""  # what a plain scalar may start with
    quoted = r"""(?:"[^"\\\n]*+"|'[^'\n]*+')"""
    item = rf"""(?:[^\n'"#!\[\]{{}}]++|(?<=[\[{{,:?]){quoted}|(?<=[\[{{,:?][ ]){quoted})"""
    flow = rf"[\[{{]{item}*+[\]}}]"
    for _ in range(2):
        flow = rf"[\[{{](?:{item}|{flow})*+[\]}}]"
    key = rf"{start}(?:[^\n:#'\"\[\]{{}}]++|:(?=[^ \t\n]))*+:(?:[ ]++|(?=\n)|\Z)"
    plain = rf"{start}(?:[^\n:#]++|:(?=[^ \t\n]))*+"
    value = rf"(?:{flow}|{plain}|{quoted})"
    comment = r"(?<=[ \t])#[^\n]*+"  # a '#' after a blank
    skip = r"(?:[ \t]*+(?:#[^\n]*+)?\n)*+"  # blank and comment lines
    nxt = rf"(?:\n({skip})( *+)(?=[^ \t\n#]))?"
    end = rf"[ \t]*+(?:{comment})?\n{skip}"  # the end of a line, and blank and comment lines
    return (
        re.compile(
            rf"((?:-[ ]++)*+)({key})?(?:({flow})|({plain})|{quoted})?[ \t]*+({comment})?"
            rf"(?=\n|\Z){nxt}"
        ),
        re.compile(rf"(?=( *+))(?:\1(?:{key}{value}?|-[ ]++{value}){end}(?=\1[^ \t\n#]))*+"),
        re.compile(
            rf"(?=( *+)-( ++))[^\n]*+\n{skip}"
            rf"(?:(?:\1-\2|\1 \2){key}{value}?{end}(?=\1-\2{start}|\1 \2{start}))*+"
        ),
    )


_LINE, _SIBLINGS, _ITEMS = _patterns()


def too_deep(text: str, limit: int) -> tuple[int, int] | None:
    """``(line, column)``, both 0-based, of the first collection that opens more than ``limit``
    levels deep; ``None`` when nothing does. Linear in the length of ``text``."""
    return _scan(text, limit, True)


def _is_marker(text: str, i: int) -> bool:
    """A ``---`` or ``...`` document marker at ``i`` (the start of a line)."""
    return text.startswith(("---", "..."), i) and text[i + 3 : i + 4] in ("", " ", "\t", "\n")


def _scan(text: str, limit: int, whole_lines: bool) -> tuple[int, int] | None:
    """``too_deep``; with ``whole_lines`` false every line is read token by token."""
    try:
        _levels(text, limit, whole_lines)
    except _TooDeep as deep:
        return deep.args[0], deep.args[1]
    return None


def _levels(text: str, limit: int, whole_lines: bool) -> None:
    """Follow the levels that ``text`` opens; raises ``_TooDeep`` where they pass ``limit``."""
    text = _BREAKS.sub("\n", text) if any(c in text for c in _BREAK_CHARS) else text
    n = len(text)
    i = 1 if text.startswith("\ufeff") else 0
    line, start = 0, 0  # current line and the index where it starts
    first = True  # the next token is the first of its line
    flow = 0  # open [ and {
    indents = [-1]  # -1, then the columns of the open block collections (the scanner's indents)
    key_line, key_col = -1, -1  # where the node that a ':' would make a key starts
    plain_from = -1  # the line before ended in a plain scalar: lines from this column continue it

    while True:
        j = _SKIP.match(text, i).end()  # type: ignore[union-attr]  # always matches
        if j > i:
            breaks = text.count("\n", i, j)
            if breaks:
                first, line, start = True, line + breaks, text.rfind("\n", i, j) + 1
                if plain_from >= 0 and "#" in text[i:j]:
                    plain_from = -1  # a comment ends a plain scalar
            i = j
        if i >= n:
            return
        col = i - start
        marker = col == 0 and _is_marker(text, i)
        if not flow:
            while indents[-1] > col:
                indents.pop()
            if key_line != line:
                key_line, key_col = line, col
            if first and plain_from >= 0:
                cont, plain_from = col >= plain_from and not marker, -1
                if cont:  # the line continues the plain scalar of the line before
                    first = False
                    i, line, start = _plain_at(text, i, 0, indents[-1] + 1, line, start)
                    continue
            if first and whole_lines and not marker and len(indents) + 5 <= limit:
                i, line, start, col, plain_from = _whole_lines(text, i, line, start, col, indents, limit - 4)
                if i >= n or text[i] == "\n" or plain_from >= 0:
                    continue  # at the end of a line, or at one that may continue a plain scalar
                key_line, key_col = line, col  # at the first token of a line _LINE does not read
                marker = col == 0 and _is_marker(text, i)
        first = False
        if marker or text[i] in "[{]},-?:":
            i, line, start, flow, key_line = _token(
                text, i, line, start, col, marker, flow, indents, key_line, key_col, limit
            )
        else:
            i, line, start = _node(text, i, text[i], col, flow, indents[-1], line, start)


class _TooDeep(Exception):
    """The collection at ``(line, column)`` opens more than the limit."""


def _token(
    text: str,
    i: int,
    line: int,
    start: int,
    col: int,
    marker: bool,
    flow: int,
    indents: list[int],
    key_line: int,
    key_col: int,
    limit: int,
) -> tuple[int, int, int, int, int]:
    """Read the token at ``i`` (at ``col``): a document marker (``marker``), a flow indicator or
    ``-``, ``?`` or ``:``, opening and closing flow and block collections. Returns the position,
    line, line start, flow level and key line after it; raises ``_TooDeep`` past ``limit``."""
    if marker:
        if not flow:
            del indents[1:]
        return i + 3, line, start, flow, -1
    ch = text[i]
    if ch in "[{":
        flow += 1
        if flow + len(indents) - 1 > limit:
            raise _TooDeep(line, col)
    elif ch in "]},":
        if ch != "," and flow:
            flow -= 1
    elif ch in "-?:" and (text[i + 1 : i + 2] in ("", " ", "\t", "\n") or (flow and ch != "-")):
        if not flow:
            # '- ' and '? ' open a collection at their column; ':' a mapping at its key's
            at = key_col if ch == ":" and key_line == line else col
            if at > indents[-1]:
                indents.append(at)
                if len(indents) - 1 > limit:
                    raise _TooDeep(line, at)
            key_line = -1  # the next token starts the next node
    else:
        return (*_node(text, i, ch, col, flow, indents[-1], line, start), flow, key_line)
    return i + 1, line, start, flow, key_line


def _node(
    text: str, i: int, ch: str, col: int, flow: int, indent: int, line: int, start: int
) -> tuple[int, int, int]:
    """Skip the token at ``i`` that opens nothing (``ch`` its first character): a directive, an
    anchor, alias or tag, a scalar. Returns the position, line and line start after it."""
    if col == 0 and ch == "%":  # a directive
        j = text.find("\n", i)
        return (len(text) if j < 0 else j), line, start
    if ch in "&*":
        return _ANCHOR.match(text, i + 1).end(), line, start  # type: ignore[union-attr]
    if ch == "!":
        j = _TAG.match(text, i).end()  # type: ignore[union-attr]
    elif ch == "'" or ch == '"':
        j = (_SINGLE if ch == "'" else _DOUBLE).match(text, i).end()  # type: ignore[union-attr]
    elif ch in "|>" and not flow:
        j = _block_scalar(text, i, indent)
    else:
        return _plain_at(text, i, flow, indent + 1, line, start)
    return (j, *_where(text, i, j, line, start))


def _plain_at(text: str, i: int, flow: int, indent: int, line: int, start: int) -> tuple[int, int, int]:
    """``_plain`` with the line and line start after the scalar."""
    j = _plain(text, i, flow, indent)
    return (j, *_where(text, i, j, line, start))


def _where(text: str, j: int, i: int, line: int, start: int) -> tuple[int, int]:
    """The line and line start at ``i``, from those at ``j <= i``."""
    breaks = text.count("\n", j, i)
    if breaks:
        return line + breaks, text.rfind("\n", j, i) + 1
    return line, start


def _whole_lines(
    text: str, i: int, line: int, start: int, col: int, indents: list[int], room: int
) -> tuple[int, int, int, int, int]:
    """Read the lines from ``i`` (the first token of a line, at ``col``) that ``_LINE`` reads whole,
    pushing their ``- `` and ``key:`` columns onto ``indents`` while it holds at most ``room``
    entries, and stop at the first line it does not read, at a line that may continue a plain
    scalar, or at a comment, a tab or the end. Returns the position, line, line start and column
    reached, and the column from which a line continues the plain scalar ending the last line
    read (-1: none)."""
    match, siblings = _LINE.match, _SIBLINGS.match
    anchor = -1  # the start of the "- key: ..." line just read, with its dash's and key's columns
    dash_col = key_col = 0
    while True:
        if anchor >= 0 and (col == dash_col or col == key_col) and len(indents) <= room:
            i, line, start, col = _items(text, i, anchor, line, start, col, dash_col, key_col, indents)
        elif col == indents[-1] and len(indents) <= room:
            m = siblings(text, start)  # lines that open nothing at this column
            if m.end() > start:  # type: ignore[union-attr]  # always matches
                line += text.count("\n", start, m.end())  # type: ignore[union-attr]
                start = m.end()  # type: ignore[union-attr]
                i = start + col
        if not col and _is_marker(text, i):
            return i, line, start, col, -1
        m = match(text, i)
        if m is None:
            return i, line, start, col, -1
        dashes, key, _, plain, comment, skipped, indent = m.groups()
        if comment is not None or (skipped and "#" in skipped):
            plain = None  # a comment ends a plain scalar
        if len(indents) + len(dashes) > room:
            return i, line, start, col, -1
        anchor = -1
        if key is not None and dashes and dashes.count("-") == 1:
            anchor, dash_col, key_col = start, col, col + len(dashes)
        if dashes:  # "- " at each column that is not open yet
            _open_dashes(indents, dashes, col)
        if key is not None and col + len(dashes) > indents[-1]:
            indents.append(col + len(dashes))
        if indent is None:
            return m.end(), line, start, col, indents[-1] + 1 if plain is not None else -1
        i = m.end()
        line += skipped.count("\n") + 1 if skipped else 1
        col = len(indent)
        start = i - col
        if plain is not None and col > indents[-1]:
            return i, line, start, col, indents[-1] + 1
        while indents[-1] > col:
            indents.pop()


def _items(
    text: str,
    i: int,
    anchor: int,
    line: int,
    start: int,
    col: int,
    dash_col: int,
    key_col: int,
    indents: list[int],
) -> tuple[int, int, int, int]:
    """Read on past the further ``- key: value`` items of the sequence whose ``- key: ...`` line
    starts at ``anchor`` (``_ITEMS``). Returns the position, line, line start and column reached."""
    m = _ITEMS.match(text, anchor)  # the state stays as it is
    if m is None or m.end() <= start:
        return i, line, start, col
    line += text.count("\n", start, m.end())
    start = m.end()
    if indents[-1] == dash_col:
        indents.append(key_col)  # the last item read left its mapping open
    col = dash_col if text[start + dash_col] == "-" else key_col
    if col == dash_col:
        indents.pop()
    return start + col, line, start, col


def _open_dashes(indents: list[int], dashes: str, col: int) -> None:
    """Push the column of each ``-`` in ``dashes`` (from ``col``) that is not open yet."""
    for k, c in enumerate(dashes, col):
        if c == "-" and k > indents[-1]:
            indents.append(k)


def _plain(text: str, i: int, flow: int, indent: int) -> int:
    """The end of the plain scalar that starts at ``i``, continued over the following lines that
    are indented at least ``indent`` (any line in flow context), as libyaml reads it."""
    pattern = _PLAIN_FLOW if flow else _PLAIN_BLOCK
    n = len(text)
    while True:
        j = pattern.match(text, i).end()  # type: ignore[union-attr]
        if j == i:
            j = i + 1  # a character no token starts with: the parser stops here
        k = j
        while k < n and text[k] in " \t":
            k += 1
        if k < n and text[k] != "\n":
            return j  # ': ', ' #' or a flow indicator follows on this line
        if k >= n:
            return n
        lead = _LEAD.match(text, k + 1)
        nxt = lead.end()  # type: ignore[union-attr]
        line_start = lead.start(1)  # type: ignore[union-attr]
        if (
            nxt >= n
            or text[nxt] == "#"
            or (not flow and nxt - line_start < indent)
            or (
                nxt == line_start
                and text.startswith(("---", "..."), nxt)
                and text[nxt + 3 : nxt + 4] in ("", " ", "\t", "\n")
            )
        ):
            return j
        i = nxt


def _block_scalar(text: str, i: int, indent: int) -> int:
    """The end of the ``|`` or ``>`` block scalar whose header starts at ``i``: its header line and
    every following line that is blank or indented at least the content's indentation."""
    n = len(text)
    eol = text.find("\n", i)
    if eol < 0:
        return n
    digit = _HEADER.match(text, i + 1).group(1)  # type: ignore[union-attr]
    pos = eol + 1
    if digit:
        need = max(indent, 0) + int(digit)
    else:  # libyaml: the deepest of the leading blank lines and the first content line, >= 1
        need, k = 0, pos
        while k < n:
            e = text.find("\n", k)
            e = n if e < 0 else e
            body = text[k:e]
            spaces = len(body) - len(body.lstrip(" "))
            need = max(need, spaces)
            if spaces < len(body):
                break
            k = e + 1
        need = max(need, indent + 1, 1)
    prefix = " " * need
    while pos < n:
        e = text.find("\n", pos)
        e = n if e < 0 else e
        if not text.startswith(prefix, pos) and text[pos:e].strip(" "):
            return pos
        pos = e + 1
    return n
