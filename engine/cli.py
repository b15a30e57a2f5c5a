"""Command-line arguments in, text on stdout/stderr and an exit code out.

``engine check | plan | schema | graph | fake | demo``. Exit codes: 0 ok, 1 config errors, 2 usage.
Bad input never shows a Python traceback: every error is printed like a compiler's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, NoRouteError, Problem, RequestError
from engine.graph import RoutingGraph

__all__ = ["main"]

OK, CONFIG_ERROR, USAGE = 0, 1, 2


class _Usage(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="engine", description="Declarative routing for LLM API "
                                "requests: check, plan and run routes.yaml.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_file(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("file", nargs="?", default="routes.yaml",
                        help="config file (default: ./routes.yaml)")
        sp.add_argument("--profile", default=os.environ.get("ENGINE_PROFILE") or None,
                        help="overlay profiles/NAME.yaml (default: $ENGINE_PROFILE)")

    c = sub.add_parser("check", help="validate a config; print every located problem")
    with_file(c)
    c.add_argument("--strict", action="store_true", help="warnings fail too")
    c.add_argument("--quiet", "-q", action="store_true", help="print problems only")

    pl = sub.add_parser("plan", help="dry run: what the engine would do with a request")
    with_file(pl)
    pl.add_argument("--model", "-m", help="requested model (or route name)")
    pl.add_argument("--request", "-r", help="a JSON file with the request (OpenAI style)")
    pl.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                    help="request metadata (repeatable)")
    pl.add_argument("--temperature", type=float, help="request temperature")
    pl.add_argument("--stream", action="store_true", help="plan a streaming request")
    pl.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("schema", help="print the JSON Schema of routes.yaml (for editors)")
    s.add_argument("--output", "-o", help="write to a file instead of stdout")

    g = sub.add_parser("graph", help="print the routing graph as Mermaid")
    with_file(g)

    f = sub.add_parser("fake", help="run the bundled fake provider (all four wire formats)")
    f.add_argument("--host", default="127.0.0.1")
    f.add_argument("--port", type=int, default=8400)

    d = sub.add_parser("demo", help="start the fake provider and route real requests through "
                       "the config (retry, failover, breaker)")
    with_file(d)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    try:
        if args.command == "fake":
            from engine.fake import main as fake_main

            return int(fake_main(["--host", args.host, "--port", str(args.port)]) or 0)
        if args.command == "schema":
            return _schema(args.output)
        if args.command == "demo":
            from engine.demo import run as demo

            return demo(args.file, args.profile)
        graph = _compile(args.file, args.profile)
        if args.command == "check":
            return _check(args, graph)
        if args.command == "plan":
            return _plan(args, graph)
        if args.command == "graph":
            from engine.mermaid import to_mermaid

            sys.stdout.write(to_mermaid(graph))
            return OK
    except ConfigError as exc:
        _print_problems(exc.problems)
        n = len(exc.errors)
        print(f"{n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return CONFIG_ERROR
    except _Usage as exc:
        print(f"engine: error: {exc}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return 130
    return USAGE


def _compile(file: str, profile: str | None) -> RoutingGraph:
    from engine.compiler import compile_file

    return compile_file(file, profile=profile)


def _print_problems(problems: Sequence[Problem]) -> None:
    for p in problems:
        print(p.format(), file=sys.stderr)


def _check(args: argparse.Namespace, graph: RoutingGraph) -> int:
    warnings = graph.warnings
    _print_problems(warnings)
    if args.strict and warnings:
        print(f"{len(warnings)} warning(s) (--strict)", file=sys.stderr)
        return CONFIG_ERROR
    if not args.quiet:
        files = " + ".join(graph.sources)
        print(f"{files}: ok ({len(graph.providers)} providers, {len(graph.groups)} groups, "
              f"{len(graph.routes)} routes; {len(warnings)} warning"
              f"{'s' if len(warnings) != 1 else ''})")
    return OK


def _plan(args: argparse.Namespace, graph: RoutingGraph) -> int:
    from engine.plan import build_plan

    request: dict[str, Any] = {}
    if args.request:
        try:
            request = json.loads(Path(args.request).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise _Usage(f"cannot read request {args.request}: {exc}") from None
        if not isinstance(request, dict):
            raise _Usage(f"{args.request}: the request must be a JSON object")
    if args.model:
        request["model"] = args.model
    if "model" not in request:
        raise _Usage("give --model M or a --request file with a model")
    request.setdefault("messages", [{"role": "user", "content": "Hello!"}])
    if args.temperature is not None:
        request["temperature"] = args.temperature
    if args.stream:
        request["stream"] = True
    extra: dict[str, Any] = {}
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep:
            raise _Usage(f"--metadata wants KEY=VALUE, got {item!r}")
        extra[key] = _scalar(value)
    if extra:
        meta = request.get("metadata")
        if meta is None:
            request["metadata"] = extra
        elif isinstance(meta, dict):
            meta.update(extra)
        # else the file's metadata is not a mapping, which build_plan reports
    try:
        plan = build_plan(graph, request)
    except RequestError as exc:
        raise _Usage(f"{args.request}: {exc}" if args.request else str(exc)) from None
    except NoRouteError as exc:
        print(f"engine: no route: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    if args.json:
        print(json.dumps(plan.as_dict(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(plan.text())
    return OK


def _scalar(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, str | int | float | bool) or value is None else text


def _schema(output: str | None) -> int:
    from engine.schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return OK
