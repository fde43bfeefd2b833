"""Refuse, at the door, a JSON body no consumer can store: a string with a control character (a
NUL made PostgreSQL refuse the workflow after its 202: retried, dead-lettered, lost) or nesting deeper than
MAX_JSON_DEPTH (the message encoder failed at ~250 levels: a 500).

`refuse_unstorable` walks the parsed body once and raises a 400 naming the first offending field, as a
dotted path ("data.notes[2]"); `document_text` puts the same character rule on the API document's request
strings, so the document says what is refused.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from services.gateway import constants as c
from services.gateway.errors import BadRequest
from services.gateway.schemas import FieldError

_CONTROL = re.compile(f"[{c.CONTROL_CHARACTERS}]")
_CONTROL_NAMES = "\\u0000-\\u001f other than tab, line feed and carriage return"


def refuse_unstorable(body: Any) -> None:
    """Raise BadRequest when `body` has a string (value or key) with a control character other than tab, line
    feed and carriage return, or is nested deeper than MAX_JSON_DEPTH."""
    problem = _first_problem(body, "", 1)
    if problem is not None:
        field, message = problem
        raise BadRequest(
            "validation_error",
            f"invalid request body: {field or 'body'}: {message}",
            details=[FieldError(field=field or "body", message=message)],
        )


def _first_problem(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    """The first (field, complaint) of `value`, found at `path` and nesting `depth`; None if it is storable."""
    if isinstance(value, str):
        return (path, f"control characters are not accepted ({_CONTROL_NAMES})") if _CONTROL.search(value) else None
    if not isinstance(value, dict | list):
        return None
    if depth > c.MAX_JSON_DEPTH:
        return path, f"nested deeper than {c.MAX_JSON_DEPTH} levels"
    if isinstance(value, list):
        children = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        for key in value:
            if _CONTROL.search(key):
                return path or "body", f"a key has control characters ({_CONTROL_NAMES})"
        children = [(f"{path}.{key}" if path else key, item) for key, item in value.items()]
    for child, item in children:
        problem = _first_problem(item, child, depth + 1)
        if problem is not None:
            return problem
    return None


class DocumentSchema(GenerateJsonSchema):
    """Pydantic's JSON Schema, with TEXT_PATTERN on every request string that has no pattern of its own (an
    enum, a format or a pattern already says more)."""

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        out = super().str_schema(schema)
        if self.mode == "validation" and "pattern" not in out and "format" not in out:
            out["pattern"] = c.TEXT_PATTERN
        return out


# `data` is free-form JSON: any value, its strings (keys too) without control characters.
JSON_VALUE_NAME = "JsonValue"
JSON_VALUE_REF = f"#/components/schemas/{JSON_VALUE_NAME}"
JSON_VALUE: JsonSchemaValue = {
    "description": f"any JSON value, its strings and keys without control characters, at most "
    f"{c.MAX_JSON_DEPTH} levels deep",
    "anyOf": [
        {"type": "string", "pattern": c.TEXT_PATTERN},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
        {
            "type": "object",
            "propertyNames": {"pattern": c.TEXT_PATTERN},
            "additionalProperties": {"$ref": JSON_VALUE_REF},
        },
    ],
}
