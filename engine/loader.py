"""YAML text in, plain data out: a location for every key and value, profile overlay, ``${ENV}``.

Only this module touches ruamel.yaml. Loading is safe (no Python tags, no custom constructors); each
value's position is kept in a ``Locations`` map keyed by path tuples such as
``("groups", "chat", "targets", 1)``. Profiles deep-merge (mappings merge, lists replace, ``null``
removes a key). Strings with ``${NAME}`` / ``${NAME:-default}`` become ``Secret`` values.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.errors import Problem
from engine.nesting import too_deep
from engine.values import Secret

__all__ = ["Loaded", "Loc", "Locations", "Path_", "format_path", "load", "load_text", "merge"]

Path_ = tuple[str | int, ...]
MAX_NODES = 200_000  # an alias bomb stops here instead of eating the machine
MAX_DEPTH = 50  # routes.yaml needs a handful of levels

try:
    import _ruamel_yaml  # noqa: F401  (ruamel.yaml.clib: the C parser)

    _HAVE_C = True
except ImportError:  # pragma: no cover - the pure parser does the same, slower
    _HAVE_C = False


@dataclass(frozen=True, slots=True)
class Loc:
    file: str
    line: int  # 1-based
    col: int  # 1-based
    source: str = ""  # the text of that line, for caret displays


@dataclass(slots=True)
class Locations:
    """Where each path's key and value were written. Lookups fall back to the longest prefix."""

    keys: dict[Path_, Loc] = field(default_factory=dict)
    values: dict[Path_, Loc] = field(default_factory=dict)

    def find(self, path: Path_, *, key: bool = False) -> Loc | None:
        first, second = (self.keys, self.values) if key else (self.values, self.keys)
        p = tuple(path)
        while True:
            loc = first.get(p) or second.get(p)
            if loc is not None or not p:
                return loc
            p = p[:-1]

    def drop(self, prefix: Path_) -> None:
        n = len(prefix)
        for table in (self.keys, self.values):
            for p in [p for p in table if p[:n] == prefix]:
                del table[p]

    def update(self, other: Locations) -> None:
        self.keys.update(other.keys)
        self.values.update(other.values)


@dataclass(slots=True)
class Loaded:
    data: Any
    locations: Locations
    problems: list[Problem]
    files: list[str]
    env_used: dict[str, bool] = field(default_factory=dict)  # name -> was it set


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}" if re.fullmatch(r"[\w-]+", part) else f"[{part!r}]"
        else:
            out = part
    return out


_STD = "tag:yaml.org,2002:"
_PLAIN_TAGS = frozenset(_STD + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp"))
_MERGE = _STD + "merge"


class _Converter:
    """Walks ruamel's node tree (each node carries its start mark) into plain data + locations."""

    def __init__(self, file: str, lines: list[str], yaml: YAML) -> None:
        self.file = file
        self.lines = lines
        self.locs = Locations()
        self.problems: list[Problem] = []
        self.nodes = 0
        self.yaml = yaml

    def loc(self, line0: int, col0: int) -> Loc:
        src = self.lines[line0] if 0 <= line0 < len(self.lines) else ""
        return Loc(self.file, line0 + 1, col0 + 1, src)

    def convert(self, node: Node, path: Path_) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig
        if len(path) > MAX_DEPTH:
            raise _TooDeep(node.start_mark.line, node.start_mark.column)
        tag = node.tag
        if tag not in _PLAIN_TAGS:
            self.tag_problem(path, str(tag))
            return None
        if isinstance(node, MappingNode):
            return self.mapping(node, path)
        if isinstance(node, SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                sub = (*path, i)
                self.locs.values[sub] = self.loc(item.start_mark.line, item.start_mark.column)
                items.append(self.convert(item, sub))
            return items
        if tag == _STD + "str":
            return node.value
        if tag == _STD + "null":
            return None
        try:
            value = self.yaml.constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError, TypeError) as exc:
            self.tag_problem(path, f"{tag} ({exc})")
            return None
        return value.isoformat() if isinstance(value, _dt.date) else value

    def mapping(self, node: MappingNode, path: Path_) -> dict[str, Any]:
        """A mapping node as a dict: string keys, each once, ``<<`` merges applied."""
        out: dict[str, Any] = {}
        merged: set[str] = set()
        for knode, vnode in node.value:
            if knode.tag == _MERGE:  # `<<: *anchor` merges keys not written here
                self.merge_keys(vnode, path, out, merged)
                continue
            kl = (knode.start_mark.line, knode.start_mark.column)
            if not isinstance(knode, ScalarNode) or knode.tag != _STD + "str":
                shown = knode.value if isinstance(knode, ScalarNode) else "(a collection)"
                self.problem(kl, format_path(path), f"mapping key {shown} is not a string", "quote it")
                continue
            key = str(knode.value)
            sub = (*path, key)
            if key in out and key not in merged:
                self.problem(
                    kl,
                    "",
                    f'YAML syntax: found duplicate key "{key}"',
                    "a key may appear only once in a mapping; remove or rename one of them",
                )
                continue
            merged.discard(key)
            self.locs.keys[sub] = self.loc(*kl)
            self.locs.values[sub] = self.loc(vnode.start_mark.line, vnode.start_mark.column)
            out[key] = self.convert(vnode, sub)
        return out

    def merge_keys(self, vnode: Node, path: Path_, out: dict[str, Any], merged: set[str]) -> None:
        """Merge the mappings of a ``<<`` value into ``out``: keys not written there, or merged."""
        for source in vnode.value if isinstance(vnode, SequenceNode) else [vnode]:
            if not isinstance(source, MappingNode):
                self.tag_problem(path, "<< of a non-mapping")
                continue
            for k, v in self.mapping(source, path).items():
                if k not in out or k in merged:
                    out[k] = v
                    merged.add(k)

    def problem(self, at: tuple[int, int], where: str, message: str, hint: str) -> None:
        """Record a problem at ``at`` (0-based line and column), with its line as the snippet."""
        loc = self.loc(*at)
        self.problems.append(Problem(self.file, loc.line, loc.col, where, message, hint, snippet=loc.source))

    def tag_problem(self, path: Path_, tag: str) -> None:
        loc = self.locs.find(path) or self.loc(0, 0)
        self.problems.append(
            Problem(
                loc.file,
                loc.line,
                loc.col,
                format_path(path),
                f"tag {tag.replace(_STD, '!!')} is not allowed",
                "remove the tag: only plain YAML is read",
                snippet=loc.source,
            )
        )


class _TooBig(Exception):
    pass


class _TooDeep(Exception):
    def __init__(self, line0: int, col0: int) -> None:
        self.line0, self.col0 = line0, col0


_DEEP_HINT = "a routes.yaml needs a handful of levels; look for a runaway [, { or -"


def _too_deep(file: str, lines: list[str], at: tuple[int, int] | None) -> Loaded:
    """The problem of a document nested deeper than ``MAX_DEPTH`` at ``at`` (0-based line and
    column; None: Python's recursion limit stopped the reading somewhere)."""
    if at is None:
        hint = _DEEP_HINT + ", or an alias (*name) inside its own anchor (&name)"
        return _failed(Problem(file, 1, 1, "", "the document nests too deeply to read", hint))
    src = lines[at[0]] if 0 <= at[0] < len(lines) else ""
    message = f"the document nests more than {MAX_DEPTH} levels deep here"
    snippet = src if len(src) <= 200 else ""
    return _failed(Problem(file, at[0] + 1, at[1] + 1, "", message, _DEEP_HINT, snippet=snippet))


def _failed(problem: Problem) -> Loaded:
    """A document that could not be read: no data, the one ``problem``."""
    return Loaded(None, Locations(), [problem], [problem.file])


def _yaml(pure: bool) -> YAML:
    yaml = YAML(typ="safe", pure=pure)
    yaml.allow_duplicate_keys = True  # duplicates are reported by the converter, located
    return yaml


def load_text(text: str, file: str = "routes.yaml") -> Loaded:
    """Parse one YAML document; syntax errors come back as located problems, never raised.

    The C parser (ruamel.yaml.clib) composes the node tree when installed, ~5x faster than the pure
    one; on a syntax error the pure parser runs again for its fuller message. Neither sees a text
    nested deeper than ``MAX_DEPTH`` (the C one would overflow the C stack at some 20,000 levels):
    a linear scan finds where it goes too deep first.
    """
    lines = text.splitlines()
    deep = too_deep(text, MAX_DEPTH)
    if deep is not None:
        return _too_deep(file, lines, deep)
    composed = _compose(text, file, lines)
    if isinstance(composed, Loaded):
        return composed
    root, yaml = composed
    if root is None:
        return Loaded(None, Locations(), [], [file])
    conv = _Converter(file, lines, yaml)
    try:
        data = conv.convert(root, ())
    except _TooDeep as exc:
        return _too_deep(file, lines, (exc.line0, exc.col0))
    except RecursionError:  # a merge key (<<: *name) inside its own anchor
        return _too_deep(file, lines, None)
    except _TooBig:
        message, hint = (
            "document is too large (an alias bomb?)",
            f"keep the document under {MAX_NODES} values",
        )
        return _failed(Problem(file, 1, 1, "", message, hint))
    if not isinstance(data, dict):
        if root.tag in _PLAIN_TAGS:
            snippet = lines[0] if lines else ""
            message, hint = "the document must be a mapping", "start with 'version: 1'"
            conv.problems.append(Problem(file, 1, 1, "", message, hint, snippet=snippet))
        data = None
    return Loaded(data, conv.locs, conv.problems, [file])


def _compose(text: str, file: str, lines: list[str]) -> tuple[Node | None, YAML] | Loaded:
    """The node tree of ``text`` and the parser that composed it, or the located syntax problem."""
    yaml = _yaml(pure=not _HAVE_C)
    try:
        try:
            return yaml.compose(text), yaml
        except MarkedYAMLError:
            if not _HAVE_C:
                raise
            yaml = _yaml(pure=True)
            return yaml.compose(text), yaml
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line, mark.column) if mark is not None else (0, 0)
        src = lines[line] if 0 <= line < len(lines) else ""
        msg = (exc.problem or exc.context or "invalid YAML").strip()
        message, hint = _plain_syntax(exc, msg, src)
        return _failed(Problem(file, line + 1, col + 1, "", message, hint, snippet=src))
    except RecursionError:
        return _too_deep(file, lines, None)
    except (YAMLError, ValueError) as exc:
        return _failed(Problem(file, 1, 1, "", f"YAML syntax: {exc}", "fix the YAML syntax"))


def _plain_syntax(exc: MarkedYAMLError, msg: str, src: str) -> tuple[str, str]:
    """The parser's message in a user's words, and what to do: the parser speaks of tokens
    (``expected <block end>, but found '<block mapping start>'``), a user of lines and quotes."""
    ctx, cm = exc.context or "", exc.context_mark
    if "alias" in ctx or "alias" in msg:  # `*` starts an alias: model: * or model: *-mini
        return (
            "YAML syntax: '*' at the start of a value is a YAML alias here",
            'quote it, as in model: "*" or model: "*-mini": a glob that starts with * needs quotes',
        )
    if "expected <block end>" in msg and cm is not None:
        return (
            "YAML syntax: this line's indentation does not fit the block around it",
            f"the block that starts at line {cm.line + 1} is indented {cm.column} "
            f"space{'s' if cm.column != 1 else ''}: indent this line the same as the keys "
            "beside it, or deeper under its parent key",
        )
    if "flow" in ctx and ("expected ','" in msg or "expected ',' or" in msg):
        return _flow_syntax(exc, src)
    if "could not find expected ':'" in msg:
        return (
            "YAML syntax: a line without 'key: value' inside a mapping",
            "add the ':' or quote the text; check the indentation of the line above",
        )
    if "mapping values are not allowed" in msg:
        return _mapping_values(exc, src)
    if "'\\t'" in msg:
        return "YAML syntax: a tab character in the indentation", "indent with spaces, not tabs"
    return f"YAML syntax: {msg}", _syntax_hint(exc, msg, src)


def _flow_syntax(exc: MarkedYAMLError, src: str) -> tuple[str, str]:
    """``_plain_syntax`` of a ``[ ]`` or ``{ }`` that an item runs past or that is not closed."""
    ctx, cm, pm = exc.context or "", exc.context_mark, exc.problem_mark
    opener, closer = ("{", "}") if "mapping" in ctx else ("[", "]")
    if cm is not None and pm is not None and pm.line != cm.line:
        return (
            f"YAML syntax: the '{opener}' at line {cm.line + 1}, column {cm.column + 1} is not closed",
            f"close it with '{closer}'; quote a value in it that contains ':' or ','",
        )
    return (
        f"YAML syntax: inside {opener} {closer}, an item goes on past where it should end",
        f"quote a value that contains ':' or ',' (\"a: b\"), and close with '{closer}'"
        if "${" not in src
        else 'quote a ${...} value: "${NAME}"',
    )


def _mapping_values(exc: MarkedYAMLError, src: str) -> tuple[str, str]:
    """``_plain_syntax`` of a ': ' where no mapping may start."""
    pm = exc.problem_mark
    if pm is not None and pm.line > 0 and ": " not in src[: pm.column]:  # its first ':'
        # the line above's value went on to this line, deeper indented
        return (
            "YAML syntax: this line is indented deeper than the key above it, so it "
            "reads as part of that key's value",
            "indent it like the keys beside it, or quote a value that contains ': '",
        )
    return (
        "YAML syntax: a value that contains ': '",
        "quote the value, or check the indentation of this line",
    )


def _syntax_hint(exc: MarkedYAMLError, msg: str, src: str) -> str:
    """What to look at for a YAML syntax error: where the unfinished construct started, ..."""
    if "${" in src and "flow" in (exc.context or ""):
        return 'inside { } or [ ], quote a ${...} value: "${NAME}"'
    if "duplicate key" in msg:
        return "a key may appear only once in a mapping; remove or rename one of them"
    if "'\\t'" in msg:
        return "indent with spaces, not tabs"
    ctx, cm, pm = exc.context, exc.context_mark, exc.problem_mark
    if ctx and cm is not None and pm is not None and (cm.line, cm.column) != (pm.line, pm.column):
        return f"{ctx.strip()} that starts at line {cm.line + 1}, column {cm.column + 1}"
    if "mapping values are not allowed" in msg:
        return "check the indentation of this line, or quote a value that contains ': '"
    return "fix the YAML syntax at this position"


def merge(base: Loaded, overlay: Loaded) -> Loaded:
    """Deep-merge ``overlay`` onto ``base``: mappings merge, lists replace, ``null`` removes."""
    locs = Locations()
    locs.update(base.locations)

    def walk(a: Any, b: Any, path: Path_) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            out = dict(a)
            for key, value in b.items():
                sub = (*path, key)
                if value is None:
                    out.pop(key, None)
                    locs.drop(sub)
                elif key in out:
                    out[key] = walk(out[key], value, sub)
                else:
                    locs.drop(sub)
                    _copy_locs(overlay.locations, locs, sub)
                    out[key] = value
            return out
        locs.drop(path)
        _copy_locs(overlay.locations, locs, path)
        return b

    if overlay.data is None:
        data = base.data
    elif base.data is None:
        data = overlay.data
        locs = overlay.locations
    else:
        data = walk(base.data, overlay.data, ())
    return Loaded(data, locs, base.problems + overlay.problems, base.files + overlay.files)


def _copy_locs(src: Locations, dst: Locations, prefix: Path_) -> None:
    n = len(prefix)
    for mine, theirs in ((src.keys, dst.keys), (src.values, dst.values)):
        for p, loc in mine.items():
            if p[:n] == prefix:
                theirs[p] = loc


_VAR = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def interpolate(loaded: Loaded, env: Mapping[str, str]) -> None:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string, in place; such strings become
    ``Secret``. ``$${`` writes a literal ``${``. Unset names without a default give an empty value
    and are recorded in ``env_used`` (the compiler warns where it matters)."""

    def walk(node: Any, path: Path_) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, str):
            return _substitute(loaded, env, node, path) if "${" in node else node
        return node

    loaded.data = walk(loaded.data, ())


def _substitute(loaded: Loaded, env: Mapping[str, str], text: str, path: Path_) -> str | Secret:
    """``text`` (at ``path``) with its ``${...}`` references replaced; a ``Secret`` if any was."""
    out: list[str] = []
    parts: list[str] = []  # the environment values put in (masked wherever they appear)
    pos = 0
    touched = False
    for m in _VAR.finditer(text):
        start = m.start()
        if start > 0 and text[start - 1] == "$":
            out.append(text[pos : start - 1] + m.group(0))
            pos = m.end()
            continue
        out.append(text[pos:start])
        pos = m.end()
        name, sep, default = m.group(1).partition(":-")
        if not _NAME.match(name):
            _problem_at(
                loaded,
                path,
                f"bad variable reference '${{{m.group(1)}}}'",
                "write ${NAME} or ${NAME:-default} with NAME of letters, digits and _",
            )
            continue
        touched = True
        value = env.get(name)
        loaded.env_used[name] = loaded.env_used.get(name, False) or value is not None
        out.append(value if value is not None else (default if sep else ""))
        if value:  # a default is written in the file: shown where the value may be shown
            parts.append(value)
    out.append(text[pos:])
    if _unclosed(text):
        _problem_at(loaded, path, "unclosed '${' in string", "close it with '}' or write '$${' for a literal")
    joined = "".join(out)
    return Secret(joined, tuple(parts)) if touched else joined


def _problem_at(loaded: Loaded, path: Path_, message: str, hint: str) -> None:
    """Record a problem at the value at ``path`` of ``loaded``."""
    loc = loaded.locations.find(path) or Loc(loaded.files[0], 0, 0)
    loaded.problems.append(
        Problem(loc.file, loc.line, loc.col, format_path(path), message, hint, snippet=loc.source)
    )


def _unclosed(text: str) -> bool:
    rest = _VAR.sub("", text.replace("$${", ""))
    return "${" in rest


def read(path: Path) -> Loaded:
    """Load one file; an unreadable file is a located problem, not an exception."""
    name = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Loaded(
            None, Locations(), [Problem(name, 0, 0, "", "file not found", "check the path")], [name]
        )
    except (OSError, UnicodeDecodeError) as exc:
        return Loaded(
            None, Locations(), [Problem(name, 0, 0, "", f"cannot read file: {exc}", "check the file")], [name]
        )
    return load_text(text, name)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load(
    text: str,
    file: str = "routes.yaml",
    *,
    profile: str | None = None,
    profiles_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Loaded:
    """Load ``text``, overlay ``profiles_dir/<profile>.yaml`` if given, then interpolate ``env``."""
    loaded = load_text(text, file)
    if profile:
        ppath = (profiles_dir or Path("profiles")) / f"{profile}.yaml"
        if not ppath.is_file():
            available = sorted(p.stem for p in ppath.parent.glob("*.yaml")) if ppath.parent.is_dir() else []
            loaded.problems.append(
                Problem(
                    _display(ppath),
                    0,
                    0,
                    "",
                    f"profile '{profile}' not found",
                    f"available profiles: {', '.join(available)}"
                    if available
                    else f"create {_display(ppath)}",
                )
            )
        else:
            overlay = read(ppath)
            if overlay.data is not None and not isinstance(overlay.data, dict):
                overlay.data = None
            loaded = merge(loaded, overlay)
    interpolate(loaded, os.environ if env is None else env)
    return loaded
