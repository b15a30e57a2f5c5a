"""Command-line arguments in, text on stdout/stderr and an exit code out.

``engine init | check | plan | schema | graph | fake | demo | batch | bench | serve``. Exit codes: 0
ok, 1 config errors (or files ``init`` would overwrite), 2 usage, 141 when the reader of stdout went away
(``engine plan --json | head``). Bad input never shows a Python traceback: every error is printed
like a compiler's, and a warning the engine logs is one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, NoRouteError, Problem, RequestError
from engine.graph import RoutingGraph

__all__ = ["main"]

OK, CONFIG_ERROR, USAGE, BROKEN_PIPE = 0, 1, 2, 141  # 141 = 128 + SIGPIPE, as a shell reports


class _Usage(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="engine",
        description="Declarative routing for LLM API requests: check, plan and run routes.yaml.",
    )
    p.add_argument("--version", action="version", version=f"engine {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    i = sub.add_parser(
        "init", help="write a starter routes.yaml and profiles/ci.yaml (wired to `engine fake`)"
    )
    i.add_argument("dir", nargs="?", default=".", help="where to write them (default: here)")
    i.add_argument("--force", action="store_true", help="overwrite files that exist")

    c = sub.add_parser("check", help="validate a config; print every located problem")
    _with_file(c)
    c.add_argument("--strict", action="store_true", help="warnings fail too")
    c.add_argument("--quiet", "-q", action="store_true", help="print problems only")

    _plan_parser(sub.add_parser("plan", help="dry run: what the engine would do with a request"))

    s = sub.add_parser("schema", help="print the JSON Schema of routes.yaml (for editors)")
    s.add_argument("--output", "-o", help="write to a file instead of stdout")

    _with_file(sub.add_parser("graph", help="print the routing graph as Mermaid"))

    # its options are engine.fake.run's, parsed in _fake (importing them here would load aiohttp
    # for every command)
    sub.add_parser(
        "fake",
        add_help=False,
        help="run the bundled fake provider (all four wire "
        "formats, faults on demand; `engine fake --help` lists them)",
    )

    d = sub.add_parser(
        "demo",
        help="start the fake provider, route real requests through the "
        "config (retry, failover, breaker, stream, hedge, cache) and tell what "
        "happened",
    )
    d.description = (
        "Starts the bundled fake provider on the port the config's providers point "
        "at (a config that would call anything else is refused) and tells what the "
        "engine's events and attempts say. Without --profile or $ENGINE_PROFILE, "
        "profiles/ci.yaml beside the config is used when it exists."
    )
    _with_file(d)

    from engine.batch.cli import add_parser as batch_parser  # (imports nothing heavy)

    batch_parser(sub)
    from engine.benchmark.cli import add_parser as bench_parser

    bench_parser(sub)
    from engine.gateway.serve import add_parser as serve_parser  # (imports nothing heavy)

    serve_parser(sub)
    return p


def _with_file(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("file", nargs="?", default="routes.yaml", help="config file (default: ./routes.yaml)")
    sp.add_argument(
        "--profile",
        default=os.environ.get("ENGINE_PROFILE") or None,
        help="overlay profiles/NAME.yaml (default: $ENGINE_PROFILE)",
    )


def _plan_parser(pl: argparse.ArgumentParser) -> None:
    _with_file(pl)
    pl.add_argument("--model", "-m", help="requested model (or route name)")
    pl.add_argument("--request", "-r", help="a JSON file with the request (OpenAI style)")
    pl.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="request metadata (repeatable)"
    )
    pl.add_argument("--temperature", type=float, help="request temperature")
    pl.add_argument("--stream", action="store_true", help="plan a streaming request")
    pl.add_argument(
        "--target",
        "-t",
        metavar="TARGET",
        help="show the request body of this target (provider/model or provider) instead of the first one's",
    )
    pl.add_argument("--json", action="store_true", help="machine-readable output")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    log = _one_line_warnings()
    try:
        code = _main(args_list)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
    except BrokenPipeError:
        _drop_stdout()
        return BROKEN_PIPE
    finally:
        logging.getLogger("engine").removeHandler(log)
    return code


def _main(args_list: list[str]) -> int:
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(args_list)
        if extra and args.command != "fake":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse: usage errors exit 2, --help and --version exit 0
        return int(exc.code or 0)
    try:
        if args.command == "fake":
            return _fake(extra)
        if args.command == "init":
            return _init(args.dir, args.force)
        if args.command == "schema":
            return _schema(args.output)
        if args.command == "batch":
            from engine.batch.cli import run as batch

            return batch(args)
        if args.command == "bench":
            from engine.benchmark.cli import run as bench

            return bench(args)
        if args.command == "serve":
            from engine.gateway.serve import run as serve

            return serve(args)
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("engine")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _drop_stdout() -> None:
    """The standard recipe for a closed pipe: point stdout at devnull, so that the interpreter's
    final flush does not raise (and print a traceback) again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no file (captured in a test)
        pass


class _OneLine(logging.Handler):
    """``engine: warning: message: ExcType: detail`` on the ``sys.stderr`` of the moment; never a
    traceback."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"engine: {record.levelname.lower()}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text += f": {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
            lines = text.splitlines()
            print(lines[0] if lines else text, file=sys.stderr)
        except Exception:
            self.handleError(record)


def _one_line_warnings() -> logging.Handler:
    """The engine's own warnings (Redis went away, a circuit store failed) as one line each on
    stderr while a command runs; the library itself leaves logging to its host."""
    handler = _OneLine(logging.WARNING)
    logging.getLogger("engine").addHandler(handler)
    return handler


def _fake(argv: list[str]) -> int:
    from engine.fake.run import add_arguments, run

    parser = add_arguments(argparse.ArgumentParser(prog="engine fake"))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return run(args)


def _init(folder: str, force: bool) -> int:
    from engine.starter import StarterExists, write_starter

    try:
        written = write_starter(folder, force=force)
    except StarterExists as exc:
        for path in exc.paths:
            print(f"engine init: {path} exists; nothing written (--force overwrites)", file=sys.stderr)
        return CONFIG_ERROR
    except OSError as exc:
        raise _Usage(f"cannot write the starter files: {exc}") from None
    for path in written:
        print(f"wrote {path}")
    where = "" if Path(folder).resolve() == Path.cwd() else f"cd {folder} && "
    print(
        f"next: {where}engine check --strict --profile ci && engine demo   (the demo starts the "
        "fake provider and routes requests through routes.yaml)"
    )
    return OK


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
        print(f"{_n(len(warnings), 'warning')} (--strict)", file=sys.stderr)
        return CONFIG_ERROR
    if not args.quiet:
        files = " + ".join(graph.sources)
        print(
            f"{files}: ok ({_n(len(graph.providers), 'provider')}, "
            f"{_n(len(graph.groups), 'group')}, {_n(len(graph.routes), 'route')}; "
            f"{_n(len(warnings), 'warning')})"
        )
    return OK


def _n(count: int, noun: str) -> str:
    """``1 group``, ``2 groups``, ``0 groups``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
        plan = build_plan(graph, request, target=args.target)
    except RequestError as exc:
        raise _Usage(f"{args.request}: {exc}" if args.request else str(exc)) from None
    except ValueError as exc:  # a --target the route cannot reach
        raise _Usage(str(exc)) from None
    except NoRouteError as exc:
        print(f"engine: no route: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False))
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
