"""JSON Schema export of every contract, and the compatibility rule a published schema must keep.

`python -m contracts.export` writes contracts/schemas/; contracts/frozen/ holds the schemas as first
published, which tests compare against: a vN schema may only gain optional fields (docs/architecture.md#contracts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.envelope import Envelope, registered

HERE = Path(__file__).parent
SCHEMA_DIR = HERE / "schemas"
FROZEN_DIR = HERE / "frozen"


def file_name(type_: str, version: int) -> str:
    return f"{type_}.v{version}.json"


def schema_for(type_: str, version: int) -> dict[str, Any]:
    """The whole message (envelope with this payload) as one JSON Schema document."""
    model = registered()[(type_, version)]
    payload = model.model_json_schema(mode="serialization")
    envelope = Envelope.model_json_schema(mode="serialization")
    defs: dict[str, Any] = {**envelope.pop("$defs", {}), **payload.pop("$defs", {})}
    defs[model.__name__] = payload
    envelope["properties"]["type"] = {"const": type_, "type": "string", "title": "Type"}
    envelope["properties"]["version"] = {"const": version, "type": "integer", "title": "Version"}
    envelope["properties"]["payload"] = {"$ref": f"#/$defs/{model.__name__}"}
    envelope["title"] = f"{type_} v{version}"
    envelope["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    envelope["$defs"] = dict(sorted(defs.items()))
    return envelope


def all_schemas() -> dict[str, dict[str, Any]]:
    return {file_name(t, v): schema_for(t, v) for (t, v) in sorted(registered())}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def incompatibilities(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Ways `new` breaks a reader or writer of `old`: removed fields, new required fields, changed types."""
    problems: list[str] = []
    _compare(old, new, old.get("$defs", {}), new.get("$defs", {}), "$", problems)
    return problems


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = defs[ref.removeprefix("#/$defs/")]
        return resolved
    return node


def _compare(
    old: dict[str, Any],
    new: dict[str, Any],
    old_defs: dict[str, Any],
    new_defs: dict[str, Any],
    path: str,
    problems: list[str],
) -> None:
    old, new = _resolve(old, old_defs), _resolve(new, new_defs)
    for key in ("type", "const", "format"):
        if key in old and old.get(key) != new.get(key):
            problems.append(f"{path}: {key} changed from {old.get(key)!r} to {new.get(key)!r}")
    if "enum" in old and not set(old["enum"]) <= set(new.get("enum", old["enum"])):
        problems.append(f"{path}: enum values removed: {sorted(set(old['enum']) - set(new['enum']))}")
    added_required = set(new.get("required", [])) - set(old.get("required", []))
    if added_required:
        problems.append(f"{path}: new required fields {sorted(added_required)}")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, sub in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}: removed")
        else:
            _compare(sub, new_props[name], old_defs, new_defs, f"{path}.{name}", problems)
    for key in ("anyOf", "oneOf", "items"):
        if key not in old:
            continue
        if key == "items":
            _compare(old["items"], new.get("items", {}), old_defs, new_defs, f"{path}[]", problems)
            continue
        old_alts, new_alts = old[key], new.get(key, [])
        if len(new_alts) < len(old_alts):
            problems.append(f"{path}: {key} lost alternatives")
        for i, (a, b) in enumerate(zip(old_alts, new_alts, strict=False)):
            _compare(a, b, old_defs, new_defs, f"{path}<{key}{i}>", problems)
