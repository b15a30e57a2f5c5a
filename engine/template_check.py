"""A provider's kind and template path in, a compiled request template out, test-rendered once with a
sample request — or the reason it cannot be used, located in the template file."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import Problem
from engine.request import SAMPLE_REQUEST
from engine.templates import (
    BUILTIN_DIR,
    COMPILE_CHECK,
    MAX_SOURCE,
    RequestTemplate,
    TemplateFailure,
)

__all__ = ["TemplateCheck"]

Failure = str | Problem  # str: about the config's reference; Problem: inside the template file


class TemplateCheck:
    """Finds, compiles and test-renders templates for one compile; each file is read once."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self._parsed: dict[Path, RequestTemplate | Failure] = {}

    def check(
        self, kind_name: str, written: str | None, model: str
    ) -> tuple[str, RequestTemplate | None, Failure | None]:
        """``(relative path, template or None, failure or None)`` for a provider of ``kind_name``
        whose config wrote ``template: written`` (None: the kind's built-in)."""
        from engine.providers import get_kind  # the kinds know their default templates

        kind = get_kind(kind_name)
        rel = written or f"templates/{kind.default_template}"
        file = self.find(rel)
        if file is None:
            return rel, None, f"template '{rel}' not found"
        if file not in self._parsed:
            self._parsed[file] = self._parse(rel, file)
        tpl = self._parsed[file]
        if not isinstance(tpl, RequestTemplate):
            return rel, None, tpl
        for stream in (False, True):
            ctx = kind.context({**SAMPLE_REQUEST, "model": model}, model, stream)
            try:
                tpl.render_checked(**ctx)
            except TemplateFailure as exc:
                if exc.line is None:
                    exc.line = _json_error_line(tpl, ctx)
                return rel, None, self._problem(rel, exc)
        return rel, tpl, None

    def find(self, rel: str) -> Path | None:
        """Relative to the config's folder; ``templates/...`` also in the built-in templates."""
        p = Path(rel)
        candidates = [p] if p.is_absolute() else [self.base_dir / p]
        if not p.is_absolute() and p.parts and p.parts[0] == "templates":
            candidates.append(BUILTIN_DIR.joinpath(*p.parts[1:]))
        return next((c for c in candidates if c.is_file()), None)

    def _parse(self, rel: str, file: Path) -> RequestTemplate | Failure:
        try:
            size = file.stat().st_size
            if size > 4 * MAX_SOURCE:  # not read at all: a template is at most MAX_SOURCE chars
                return Problem(
                    rel,
                    1,
                    1,
                    "",
                    f"template error: the template is {size:,} bytes; at most {MAX_SOURCE:,} characters",
                    "split or shorten it",
                )
            return _parse_template(rel, file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            return f"cannot read template '{rel}': {exc}"
        except TemplateFailure as exc:
            return self._problem(rel, exc)

    def _problem(self, rel: str, exc: TemplateFailure) -> Problem:
        file = self.find(rel)
        lines = file.read_text(encoding="utf-8").splitlines() if file else []
        line = exc.line if exc.line and exc.line <= max(len(lines), 1) else 1
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        return Problem(
            rel,
            line,
            1,
            "",
            f"template error: {exc}",
            "fix the template; it is rendered with a sample request at compile time",
            snippet=src,
        )


@functools.lru_cache(maxsize=256)
def _parse_template(name: str, source: str) -> RequestTemplate:
    """Jinja compiles a template in milliseconds; a reload with unchanged templates reuses them
    (keyed by the text, so an edited template is compiled afresh; failures are not cached)."""
    return RequestTemplate(name, source)


def _json_error_line(tpl: RequestTemplate, ctx: Mapping[str, Any]) -> int | None:
    """The template line behind a JSON syntax error in its output, when exactly one template line
    reads like the output line the parser stopped at (``}`` after a trailing comma, ...)."""
    try:
        text = tpl.render(COMPILE_CHECK, **ctx)
        json.loads(text)
    except json.JSONDecodeError as exc:
        out = text.splitlines()
        lineno = _stop_line(text, exc)
        bad = out[lineno - 1].strip() if 0 < lineno <= len(out) else ""
        hits = [i for i, line in enumerate(tpl.source.splitlines(), 1) if line.strip() == bad]
        return hits[0] if bad and len(hits) == 1 else None
    except Exception:  # the render itself failed: that was reported with its own line
        return None
    return None


def _stop_line(text: str, exc: json.JSONDecodeError) -> int:
    """The output line the parser stopped at, the same on every Python: since 3.13 a trailing
    comma is reported at the comma ("Illegal trailing comma before end of object"), before at the
    bracket after it ("Expecting property name ..."); the bracket's line is the one to find in
    the template (a comma ends a line that holds a rendered value)."""
    pos = exc.pos
    if exc.msg.startswith("Illegal trailing comma"):
        rest = text[pos + 1 :]
        pos += 1 + len(rest) - len(rest.lstrip())
    return text.count("\n", 0, pos) + 1
