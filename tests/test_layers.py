"""Imports point one way and each foreign library stays where it belongs.

- The compile half runs in stages (loader -> schema -> compiler -> graph) and never loads the
  runtime; the run-time half is layered providers -> runtime -> api: a provider kind knows nothing
  of the runtime or the facade, the runtime nothing of the facade or the compile stages.
- Every third-party library engine/ imports is declared here with the modules (path prefixes under
  engine/, so ``runtime/state`` holds for ``runtime/state.py`` and ``runtime/state/*.py`` alike)
  that may import it; a new dependency has to be placed.

Relative imports are resolved, so ``from .redis import X`` counts as what it names.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "engine"

# the entry points: the only modules that may put the halves together
FACADE = {"__init__", "__main__", "api", "sync", "cli", "demo", "starter"}
ENTRY = {
    "engine.api",
    "engine.sync",
    "engine.cli",
    "engine.demo",
    "engine.starter",
    "engine.batch",
    "engine.benchmark",
}
# packages that are commands (``engine batch``, ``engine bench``): entry points like the facade
COMMANDS = {"batch", "benchmark"}
COMPILE_STAGES = {"engine.loader", "engine.schema", "engine.compiler"}

# module (relative to engine/, without .py) -> engine modules it must not import
FORBIDDEN_INTERNAL = {
    "values": {"engine"},
    "result": {"engine"},
    "errors": {"engine.loader", "engine.schema", "engine.compiler"},
    "loader": {"engine.schema", "engine.compiler", "engine.graph", "engine.providers"},
    "schema": {"engine.loader", "engine.compiler", "engine.graph"},
    "graph": {"engine.loader", "engine.schema", "engine.compiler"},
    "compiler": {"engine.cli"},
    "builtins": {"engine.loader", "engine.schema", "engine.compiler"},
    "reach": {"engine.loader", "engine.schema", "engine.compiler"},
    "template_check": {"engine.loader", "engine.schema", "engine.compiler"},
    "plan": {"engine.loader", "engine.schema", "engine.compiler"},
}
# package prefix -> engine modules nothing in it may import (the layers)
FORBIDDEN_BY_PACKAGE = {
    "providers": {"engine.runtime", "engine.fake", "engine.strategies", *ENTRY, *COMPILE_STAGES},
    "runtime": {"engine.fake", "engine.snapshots", "engine.pytest_plugin", *ENTRY, *COMPILE_STAGES},
    "fake": {"engine"},  # the fake stands alone: a tool users run against any client
    # the gateway is an entry point (engine serve): the facade and the compile stages, not the rest
    "gateway": {"engine.fake", "engine.snapshots", "engine.pytest_plugin", "engine.demo", "engine.starter"},
}
# everything outside runtime/, fake/ and the facade is the compile half (stages, graph, plan,
# strategies, templates, snapshots, providers): it never imports the runtime or the facade
COMPILE_HALF_FORBIDDEN = {"engine.runtime", *ENTRY}

# foreign library -> path prefixes (under engine/) of the modules allowed to import it
FOREIGN = {
    "ruamel": {"loader"},
    "_ruamel_yaml": {"loader"},
    "jinja2": {"templates"},
    "pydantic": {"schema", "request"},
    "httpx": {"runtime/backends"},
    "httpx_aiohttp": {"runtime/backends"},
    "aiohttp": {"runtime/backends", "fake"},
    "multidict": {"runtime/backends"},
    "yarl": {"runtime/backends"},
    "redis": {"runtime/state"},
    "purgatory": {"runtime/breakers", "runtime/state"},
    "aiocache": {"runtime/state"},
    "prometheus_client": {"telemetry/metrics"},
    "opentelemetry": {"telemetry/traces"},
    "uvloop": {"api", "runtime", "fake", "gateway/serve"},
    "uvicorn": {"gateway/serve"},
    "orjson": {"gateway/jsonio", "providers/base"},  # the gateway's JSON, the providers' parse
    "pytest": {"pytest_plugin"},
    "tqdm": {"batch/progress", "benchmark/cli"},
    "matplotlib": {"benchmark/plot"},
}
RUNTIME_LIBRARIES = (
    "aiohttp",
    "httpx",
    "httpx_aiohttp",
    "redis",
    "purgatory",
    "aiocache",
    "yarl",
    "multidict",
    "uvloop",
    "prometheus_client",
    "opentelemetry",
)


def _module_name(path: Path, root: Path = ROOT) -> str:
    """``engine.runtime.state`` for engine/runtime/state.py and engine/runtime/state/__init__.py."""
    parts = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports (and ``module.name`` for each ``from module import name``),
    relative imports made absolute."""
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def _modules(root: Path = ROOT) -> dict[str, set[str]]:
    return {p.relative_to(root).with_suffix("").as_posix(): _imports(p, root) for p in root.rglob("*.py")}


def _under(name: str, prefix: str, sep: str) -> bool:
    return name == prefix or name.startswith(prefix + sep)


def _banned_for(mod: str) -> set[str]:
    top = mod.split("/")[0]
    if top in FORBIDDEN_BY_PACKAGE:
        return FORBIDDEN_BY_PACKAGE[top]
    banned = set(FORBIDDEN_INTERNAL.get(mod, set()))
    if mod not in FACADE and top not in COMMANDS:
        banned |= COMPILE_HALF_FORBIDDEN
    return banned


def _violations(mod: str, imports: set[str]) -> list[str]:
    top = mod.split("/")[0]
    own = f"engine.{top}" if "/" in mod else None  # a package may import itself
    return [
        f"{mod} imports {i}"
        for i in sorted(imports)
        if not (own and _under(i, own, ".")) and any(_under(i, b, ".") for b in _banned_for(mod))
    ]


def test_internal_import_direction() -> None:
    bad = [v for mod, imports in _modules().items() for v in _violations(mod, imports)]
    assert bad == []


def test_the_rules_bite(tmp_path: Path) -> None:
    # prefixes mean a package and its modules, not a namesake
    assert _under("engine.runtime.state.redis", "engine.runtime", ".")
    assert not _under("engine.runtimes", "engine.runtime", ".")
    assert _under("runtime/state/redis", "runtime/state", "/")
    assert not _under("runtime/statement", "runtime/state", "/")
    # each layer would be caught reaching up, relative imports included
    code = {
        "providers/x": "from ..runtime.executor import Runtime\n",
        "runtime/state/x": "from ...api import Engine\n",
        "runtime/y": "from engine.compiler import compile_text\n",
        "strategies/x": "from engine.runtime import limits\n",
        "plan2": "import engine.runtime.state\n",
        "fake/x": "from engine.result import Usage\nfrom . import wire\n",
    }
    root = tmp_path / "engine"
    for mod, text in code.items():
        path = root / f"{mod}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        found = _violations(mod, _imports(path, root))
        assert found and not any("engine.fake" in f for f in found), (mod, found)
    assert _violations("api", {"engine.runtime.state", "engine.compiler"}) == []


def test_foreign_libraries_stay_in_their_modules() -> None:
    bad = []
    for mod, imports in _modules().items():
        for lib, allowed in FOREIGN.items():
            if any(_under(i, lib, ".") for i in imports) and not any(
                _under(mod, prefix, "/") for prefix in allowed
            ):
                bad.append(f"{mod} imports {lib}")
    assert bad == []


def test_every_foreign_library_is_placed() -> None:
    unplaced = sorted(
        {
            f"{mod}: {i.split('.')[0]}"
            for mod, imports in _modules().items()
            for i in imports
            if i.split(".")[0] not in {"engine", "", *sys.stdlib_module_names}
            and i.split(".")[0] not in FOREIGN
        }
    )
    assert unplaced == [], "declare these in FOREIGN with the modules that may import them"


def test_every_module_opens_with_a_docstring() -> None:
    missing = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if p.stat().st_size and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert missing == []


def test_the_compile_half_and_the_plugin_never_load_the_runtime() -> None:
    # a fresh interpreter: what `engine check` and every pytest session (the plugin) pay
    code = (
        "import sys, engine, engine.cli, engine.compiler, engine.plan, engine.snapshots, "
        "engine.pytest_plugin, engine.mermaid\n"
        f"print(sorted(m for m in {RUNTIME_LIBRARIES!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
