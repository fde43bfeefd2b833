"""The OpenAPI 3.1 document, generated from the route table (api.ROUTES) and the pydantic models.

The same `RouteDoc` entries register the aiohttp routes (service.py) and produce the document, and every
schema in it comes from schemas.py — the models the handlers build their answers from — so the document
cannot list a route that does not exist, miss one that does, or describe a body the code does not send.
Pydantic emits JSON Schema 2020-12, which is OpenAPI 3.1's schema dialect; storable.DocumentSchema adds what
every request string must be (no control characters) and `JsonValue`, the free-form `data`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, JsonSchemaValue, models_json_schema

from services.gateway.storable import JSON_VALUE, JSON_VALUE_NAME, DocumentSchema

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
BEARER = "bearerAuth"

Refs = Mapping[tuple[type[BaseModel], JsonSchemaMode], JsonSchemaValue]
"""Each model (and mode) the document uses → its `$ref` into components/schemas."""

# Response headers the routes may send, described once.
HEADERS: Mapping[str, dict[str, Any]] = {
    "Location": {"description": "where to read the workflow's status", "schema": {"type": "string"}},
    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}},
    "WWW-Authenticate": {"description": "the Bearer challenge (RFC 6750)", "schema": {"type": "string"}},
    "Allow": {"description": "the methods this path accepts", "schema": {"type": "string"}},
}


@dataclass(frozen=True)
class Param:
    name: str
    location: Literal["query", "header", "path"]  # a path parameter is always required
    description: str
    schema: Mapping[str, Any]
    required: bool = False
    example: str | None = None  # what Swagger UI (/api/docs) fills the parameter with


@dataclass(frozen=True)
class Reply:
    description: str
    model: type[BaseModel] | None = None  # None: any JSON object (e.g. this document itself)
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Example:
    """A request body shown in the document (Swagger UI offers it as the body to send)."""

    summary: str
    value: Mapping[str, Any]


EndpointMethod = Callable[[Any, web.Request], Awaitable[web.StreamResponse]]
"""A handler as its endpoint class defines it (e.g. `CostEndpoints.get_stats`); the gateway binds it to its
instance of that class."""


@dataclass(frozen=True)
class RouteDoc:
    """One route: how aiohttp serves it (method, path, handler) and how the document shows it."""

    method: str
    path: str
    handler: EndpointMethod
    operation_id: str
    summary: str
    replies: Mapping[int, Reply]
    description: str = ""
    request: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    auth: bool = True
    tags: tuple[str, ...] = field(default_factory=tuple)


def build_document(
    routes: Sequence[RouteDoc],
    *,
    title: str,
    version: str,
    examples: Mapping[str, Mapping[str, Example]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`; `examples`: request bodies by operation id, then by name."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for route in routes:
        if route.request is not None:
            wanted[(route.request, "validation")] = None
        for reply in route.replies.values():
            if reply.model is not None:
                wanted[(reply.model, "serialization")] = None
    found, top = models_json_schema(list(wanted), ref_template=REF_TEMPLATE, schema_generator=DocumentSchema)
    refs: Refs = {key: found[key] for key in wanted}

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        shown = (examples or {}).get(route.operation_id, {})
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs, shown)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": {**top.get("$defs", {}), JSON_VALUE_NAME: JSON_VALUE},
            "headers": dict(HEADERS),
            "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _operation(route: RouteDoc, refs: Refs, examples: Mapping[str, Example]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "security": [{BEARER: []}] if route.auth else [],
        "responses": {str(status): _reply(reply, refs) for status, reply in sorted(route.replies.items())},
    }
    if route.description:
        operation["description"] = route.description
    if route.tags:
        operation["tags"] = list(route.tags)
    if route.params:
        operation["parameters"] = [_parameter(p) for p in route.params]
    if route.request is not None:
        media: dict[str, Any] = {"schema": refs[(route.request, "validation")]}
        if examples:
            media["examples"] = {name: {"summary": e.summary, "value": dict(e.value)} for name, e in examples.items()}
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    return operation


def _parameter(param: Param) -> dict[str, Any]:
    out = {
        "name": param.name,
        "in": param.location,
        "description": param.description,
        "required": param.required,
        "schema": dict(param.schema),
    }
    if param.example is not None:
        out["example"] = param.example
    return out


def _reply(reply: Reply, refs: Refs) -> dict[str, Any]:
    schema = refs[(reply.model, "serialization")] if reply.model is not None else {"type": "object"}
    out: dict[str, Any] = {"description": reply.description, "content": {"application/json": {"schema": schema}}}
    if reply.headers:
        out["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in reply.headers}
    return out
