"""A tool's parameter schema (JSON Schema, or Gemini's OpenAPI subset with upper-case types) and the
user's text go in; deterministic arguments that fit the schema come out, as a model would send them.

Required properties are filled (every property when none is marked required), each with a value of
its declared type: ``const`` or the first ``enum`` value when given; strings are the user's text
(or a sample of a known ``format``), cut or padded to ``maxLength``/``minLength``; numbers are 1
moved into ``minimum``..``maximum``; booleans true; arrays hold ``minItems`` (at least one) items;
objects are filled recursively; ``anyOf``/``oneOf`` take the first non-null branch, ``allOf`` is
merged, and local ``$ref``s (``#/$defs/...``) are followed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["arguments", "example"]

_FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
}
_MAX_DEPTH = 12  # recursive schemas (a tree node whose children are nodes) stop here


def arguments(schema: Any, text: str) -> dict[str, Any]:
    """The arguments object of one call: ``example`` of the schema, always an object."""
    value = example(schema, text)
    return value if isinstance(value, dict) else {}


def example(schema: Any, text: str, root: Any = None, depth: int = 0) -> Any:
    """A value that validates against ``schema`` (``root`` resolves ``$ref``s)."""
    if root is None:
        root = schema
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return text
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            usable = [b for b in branches if _type(_resolve(b, root)) != "null"] or branches
            return example(usable[0], text, root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        schema = _merge(schema, root)
    kind = _type(schema)
    if kind == "object":
        return _object(schema, text, root, depth)
    if kind == "array":
        return _array(schema, text, root, depth)
    if kind in ("integer", "number"):
        return _number(schema, kind)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, text)


def _type(schema: Any) -> str:
    """The declared type, lower-cased (Gemini writes OBJECT, STRING, ...); the first non-null of a
    list; inferred from ``properties``/``items`` when absent."""
    if not isinstance(schema, dict):
        return "string"
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str) and k.lower() != "null"]
        kind = kinds[0] if kinds else "null"
    if isinstance(kind, str):
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _resolve(schema: Any, root: Any) -> Any:
    for _ in range(_MAX_DEPTH):
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        target = root
        for part in ref[1:].strip("/").split("/") if ref != "#" else ():
            target = (
                target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
            )
        if not isinstance(target, dict):
            return {}
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _merge(schema: dict[str, Any], root: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        part = _resolve(part, root)
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _object(schema: dict[str, Any], text: str, root: Any, depth: int) -> dict[str, Any]:
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    required = schema.get("required")
    names = [n for n in required if n in props] if isinstance(required, list) and required else list(props)
    return {name: example(props[name], text, root, depth + 1) for name in names}


def _array(schema: dict[str, Any], text: str, root: Any, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list):
        return [example(s, text, root, depth + 1) for s in prefix]
    items = schema.get("items")
    if isinstance(items, list):  # draft-4 tuple form
        return [example(s, text, root, depth + 1) for s in items]
    low = schema.get("minItems")
    high = schema.get("maxItems")
    n = low if isinstance(low, int) and low > 0 else 1
    if isinstance(high, int):
        n = min(n, high)
    return [example(items if isinstance(items, dict) else {}, text, root, depth + 1) for _ in range(n)]


def _number(schema: dict[str, Any], kind: str) -> int | float:
    value: float = 1
    low, high = schema.get("minimum"), schema.get("maximum")
    xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = 1 if kind == "integer" else 0.5
    if isinstance(low, int | float) and not isinstance(low, bool) and value < low:
        value = low
    if isinstance(xlow, int | float) and not isinstance(xlow, bool) and value <= xlow:
        value = xlow + step
    if isinstance(high, int | float) and not isinstance(high, bool) and value > high:
        value = high
    if isinstance(xhigh, int | float) and not isinstance(xhigh, bool) and value >= xhigh:
        value = xhigh - step
    if kind == "integer":
        return int(value) if float(value).is_integer() else int(value // 1 + 1)
    return value


def _string(schema: dict[str, Any], text: str) -> str:
    fmt = schema.get("format")
    value = _FORMATS.get(fmt, text) if isinstance(fmt, str) else text
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(high, int) and len(value) > high:
        value = value[:high]
    if isinstance(low, int) and len(value) < low:
        value += "x" * (low - len(value))
    return value
