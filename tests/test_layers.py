"""Imports point one way (loader -> schema -> compiler -> graph -> runtime) and each foreign library
stays in its one module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "engine"

# module (relative to engine/, without .py) -> engine modules it must not import
FORBIDDEN_INTERNAL = {
    "values": {"engine."},
    "result": {"engine."},
    "errors": {"engine.loader", "engine.schema", "engine.compiler", "engine.runtime", "engine.api"},
    "loader": {"engine.schema", "engine.compiler", "engine.graph", "engine.runtime", "engine.api",
               "engine.providers"},
    "schema": {"engine.loader", "engine.compiler", "engine.graph", "engine.runtime", "engine.api"},
    "graph": {"engine.loader", "engine.schema", "engine.compiler", "engine.runtime", "engine.api"},
    "compiler": {"engine.runtime", "engine.api", "engine.cli"},
    "builtins": {"engine.loader", "engine.schema", "engine.compiler", "engine.runtime",
                 "engine.api"},
    "reach": {"engine.loader", "engine.schema", "engine.compiler", "engine.runtime", "engine.api"},
    "template_check": {"engine.loader", "engine.schema", "engine.compiler", "engine.runtime",
                       "engine.api"},
    "plan": {"engine.loader", "engine.schema", "engine.compiler", "engine.runtime", "engine.api"},
}
RUNTIME_FORBIDDEN = {"engine.loader", "engine.schema", "engine.compiler", "engine.cli"}

# foreign library -> the only modules allowed to import it
FOREIGN = {
    "ruamel": {"loader"},
    "jinja2": {"templates"},
    "purgatory": {"runtime/breakers", "runtime/state/base", "runtime/state/core",
                  "runtime/state/memory", "runtime/state/redis"},
    "aiocache": {"runtime/state/redis"},
    "pydantic": {"schema", "request"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _modules() -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT).with_suffix("")): _imports(p) for p in ROOT.rglob("*.py")}


def test_internal_import_direction() -> None:
    bad = []
    for mod, imports in _modules().items():
        banned = FORBIDDEN_INTERNAL.get(mod, set())
        if mod.startswith("runtime/"):
            banned = RUNTIME_FORBIDDEN
        if mod.startswith("fake/"):
            banned = {"engine."}
            imports = {i for i in imports if not i.startswith("engine.fake")}
        bad += [f"{mod} imports {i}" for i in imports if any(
            i == b.rstrip(".") or i.startswith(b if b.endswith(".") else b + ".") or i == b
            for b in banned)]
    assert bad == []


def test_foreign_libraries_stay_in_their_module() -> None:
    bad = []
    for mod, imports in _modules().items():
        for lib, allowed in FOREIGN.items():
            if mod not in allowed and any(i == lib or i.startswith(lib + ".") for i in imports):
                bad.append(f"{mod} imports {lib}")
    assert bad == []


def test_every_module_opens_with_a_docstring() -> None:
    missing = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
               if p.stat().st_size and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert missing == []


RUNTIME_LIBRARIES = ("aiohttp", "httpx", "httpx_aiohttp", "redis", "purgatory", "aiocache", "yarl")


def test_the_compile_half_and_the_plugin_never_load_the_runtime() -> None:
    # a fresh interpreter: what `engine check` and every pytest session (the plugin) pay
    import subprocess
    import sys

    code = ("import sys, engine, engine.cli, engine.compiler, engine.plan, engine.snapshots, "
            "engine.pytest_plugin, engine.mermaid\n"
            f"print(sorted(m for m in {RUNTIME_LIBRARIES!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
