"""The AsyncAPI document of the bus: fresh, structurally an AsyncAPI 3.0 document, and in step with the code.

No package on PyPI ships the AsyncAPI 3.0 JSON Schema (it is published on npm only), so the structure is
checked here explicitly against the 3.0.0 specification's objects: the fields each object may have and must
have, the id pattern, references that resolve, an operation's messages taken from its own channel, reply
addresses as runtime expressions, and every payload a valid JSON Schema.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from jsonschema import Draft202012Validator

from contracts import messages as m
from contracts.asyncapi import ASYNCAPI_FILE, REPLIES, document, message_type, render_document
from contracts.envelope import registered
from contracts.routing import ROUTES, service_of
from contracts.schema import HERE
from libs.bus.permissions import PUBLISHES, REQUESTS

ID = re.compile(r"^[\w\d.\-_]+$")  # the 3.0.0 pattern of channel, operation and component ids
RUNTIME_EXPRESSION = re.compile(r"^\$message\.(header|payload)#(/(([^/~])|(~[01]))*)*$")
VARIABLE = re.compile(r"{([^}]+)}")

# (required, allowed) fields of each 3.0.0 object this document uses; `x-` extensions are always allowed.
OBJECTS: dict[str, tuple[set[str], set[str]]] = {
    "root": (
        {"asyncapi", "info"},
        {"asyncapi", "id", "info", "servers", "defaultContentType", "channels", "operations", "components"},
    ),
    "info": (
        {"title", "version"},
        {"title", "version", "description", "termsOfService", "contact", "license", "tags", "externalDocs"},
    ),
    "server": (
        {"host", "protocol"},
        {"host", "protocol", "protocolVersion", "pathname", "description", "title", "summary", "variables"}
        | {"security", "tags", "externalDocs", "bindings"},
    ),
    "serverVariable": (set(), {"enum", "default", "description", "examples"}),
    "channel": (
        set(),
        {"address", "messages", "title", "summary", "description", "servers", "parameters", "tags"}
        | {"externalDocs", "bindings"},
    ),
    "operation": (
        {"action", "channel"},
        {"action", "channel", "title", "summary", "description", "security", "tags", "externalDocs"}
        | {"bindings", "traits", "messages", "reply"},
    ),
    "reply": (set(), {"address", "channel", "messages"}),
    "replyAddress": ({"location"}, {"location", "description"}),
    "message": (
        set(),
        {"headers", "payload", "correlationId", "contentType", "name", "title", "summary", "description"}
        | {"tags", "externalDocs", "bindings", "examples", "traits"},
    ),
    "multiFormatSchema": ({"schemaFormat", "schema"}, {"schemaFormat", "schema"}),
    "parameter": (set(), {"enum", "default", "description", "examples", "location"}),
    "components": (
        set(),
        {"schemas", "servers", "channels", "operations", "messages", "securitySchemes", "serverVariables"}
        | {"parameters", "correlationIds", "replies", "replyAddresses", "externalDocs", "tags"}
        | {"operationTraits", "messageTraits", "serverBindings", "channelBindings", "operationBindings"}
        | {"messageBindings"},
    ),
}


def _fields(kind: str, obj: Any, where: str, problems: list[str]) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{where}: a {kind} object must be an object")
        return
    required, allowed = OBJECTS[kind]
    for name in sorted(required - obj.keys()):
        problems.append(f"{where}: missing {name}")
    for name in sorted(obj.keys() - allowed):
        if not name.startswith("x-"):
            problems.append(f"{where}: {name} is not a field of a {kind} object")


def _pointer(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _refs(node: Any, where: str = "$") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        found = [(where, node["$ref"])] if isinstance(node.get("$ref"), str) else []
        for key, value in node.items():
            found += _refs(value, f"{where}.{key}")
        return found
    if isinstance(node, list):
        return [r for i, value in enumerate(node) for r in _refs(value, f"{where}[{i}]")]
    return []


def problems_of(doc: dict[str, Any]) -> list[str]:
    """Every way `doc` is not a well-formed AsyncAPI 3.0.0 document (empty: none found)."""
    problems: list[str] = []
    _fields("root", doc, "$", problems)
    if doc.get("asyncapi") != "3.0.0":
        problems.append(f"$.asyncapi: {doc.get('asyncapi')!r} is not 3.0.0")
    _fields("info", doc.get("info"), "$.info", problems)
    _check_servers(doc, problems)
    _check_ids(doc, problems)
    _check_channels(doc, problems)
    _check_operations(doc, problems)
    _check_refs(doc, problems)
    return problems


def _check_servers(doc: dict[str, Any], problems: list[str]) -> None:
    for name, server in doc.get("servers", {}).items():
        _fields("server", server, f"$.servers.{name}", problems)
        for variable in VARIABLE.findall(server.get("host", "")):
            if variable not in server.get("variables", {}):
                problems.append(f"$.servers.{name}: host variable {variable} is not defined")
        for vname, variable in server.get("variables", {}).items():
            _fields("serverVariable", variable, f"$.servers.{name}.variables.{vname}", problems)


def _check_ids(doc: dict[str, Any], problems: list[str]) -> None:
    components = doc.get("components", {})
    _fields("components", components, "$.components", problems)
    sections = {f"$.{s}": doc.get(s, {}) for s in ("channels", "operations")}
    sections |= {f"$.components.{s}": entries for s, entries in components.items()}
    for where, entries in sections.items():
        problems += [f"{where}.{name}: not a valid id" for name in entries if not ID.match(name)]
    for name, parameter in components.get("parameters", {}).items():
        _fields("parameter", parameter, f"$.components.parameters.{name}", problems)
    for name, message in components.get("messages", {}).items():
        _fields("message", message, f"$.components.messages.{name}", problems)
        _fields("multiFormatSchema", message.get("payload"), f"$.components.messages.{name}.payload", problems)


def _check_channels(doc: dict[str, Any], problems: list[str]) -> None:
    for name, channel in doc.get("channels", {}).items():
        where = f"$.channels.{name}"
        _fields("channel", channel, where, problems)
        address = channel.get("address")
        if address is not None and not isinstance(address, str):
            problems.append(f"{where}.address: a string or null")
        for variable in VARIABLE.findall(address or ""):
            if variable not in channel.get("parameters", {}):
                problems.append(f"{where}: address parameter {variable} is not declared")


def _check_operations(doc: dict[str, Any], problems: list[str]) -> None:
    for name, op in doc.get("operations", {}).items():
        where = f"$.operations.{name}"
        _fields("operation", op, where, problems)
        if op.get("action") not in ("send", "receive"):
            problems.append(f"{where}.action: {op.get('action')!r} is neither send nor receive")
        _own_messages(op, where, problems)
        if "reply" in op:
            _fields("reply", op["reply"], f"{where}.reply", problems)
            _own_messages(op["reply"], f"{where}.reply", problems)
            address = op["reply"].get("address", {})
            _fields("replyAddress", address, f"{where}.reply.address", problems)
            if not RUNTIME_EXPRESSION.match(address.get("location", "")):
                problems.append(f"{where}.reply.address.location: not a runtime expression")


def _check_refs(doc: dict[str, Any], problems: list[str]) -> None:
    """Internal references point at something; a file reference is a JSON Schema beside the document."""
    for where, ref in _refs(doc):
        if ref.startswith("#/"):
            if _pointer(doc, ref) is None:
                problems.append(f"{where}: {ref} does not resolve")
        elif not (HERE / ref).is_file():
            problems.append(f"{where}: {ref} is not a file beside the document")
        else:
            Draft202012Validator.check_schema(json.loads((HERE / ref).read_text()))


def _own_messages(op: dict[str, Any], where: str, problems: list[str]) -> None:
    """An operation's (or reply's) messages must be messages of the channel it names."""
    channel = op.get("channel", {}).get("$ref", "")
    for ref in op.get("messages", []):
        if not ref.get("$ref", "").startswith(f"{channel}/messages/"):
            problems.append(f"{where}.messages: {ref.get('$ref')} is not a message of {channel}")


def _operation_types(doc: dict[str, Any], op_id: str) -> set[str]:
    op = doc["operations"][op_id]
    return {_pointer(doc, _pointer(doc, r["$ref"])["$ref"])["name"] for r in op["messages"]}


class TestAsyncAPI:
    def test_checked_in_document_is_fresh(self) -> None:
        """contracts/asyncapi.json is what the code generates (run `make contracts` after changing the bus)."""
        assert ASYNCAPI_FILE.read_text() == render_document(document()), "run `make contracts`"

    def test_document_is_well_formed_asyncapi_3(self) -> None:
        """Every object has its required fields and only fields of its kind; every reference resolves."""
        assert problems_of(document()) == []

    def test_the_structure_check_catches_broken_documents(self) -> None:
        """A dangling reference, a message of another channel, an unknown field and a bad action are found."""
        doc = document()
        broken = copy.deepcopy(doc)
        broken["operations"]["router.receive"]["messages"].append({"$ref": "#/channels/router/messages/nope.v1"})
        broken["operations"]["router.send.of-sender"]["messages"] = [
            {"$ref": "#/channels/router/messages/workflow.requested.v1"}
        ]
        broken["operations"]["of-sender.receive"]["action"] = "publish"  # AsyncAPI 2's word
        broken["channels"]["router"]["subscribe"] = {}
        broken["components"]["messages"]["cost.alert.v1"]["payload"]["schema"]["$ref"] = "schemas/missing.json"
        found = "\n".join(problems_of(broken))
        assert "nope.v1 does not resolve" in found
        assert "is not a message of #/channels/of-sender" in found
        assert "neither send nor receive" in found
        assert "subscribe is not a field of a channel object" in found
        assert "schemas/missing.json is not a file" in found

    def test_every_route_is_a_receive_operation(self) -> None:
        """Each service receives, on its own channel, every message the routing table sends it."""
        doc = document()
        for key, queues in ROUTES.items():
            for service in map(service_of, queues):
                ops = [o for o in doc["operations"] if o.startswith(f"{service}.") and ".send." not in o]
                received = set().union(*(_operation_types(doc, o) for o in ops if ".request." not in o))
                assert message_type(key) in received, (key, service)

    def test_every_publish_and_request_is_a_send_operation(self) -> None:
        """What libs/bus/permissions lets a service publish or ask appears as its send operation."""
        doc = document()
        for sender, keys in PUBLISHES.items():
            for key in keys:
                for target in ROUTES[key]:
                    assert message_type(key) in _operation_types(doc, f"{sender}.send.{target}"), (sender, key)
        for sender, keys in REQUESTS.items():
            for key in keys:
                op = doc["operations"][f"{sender}.request.{key}"]
                replies = {_pointer(doc, _pointer(doc, r["$ref"])["$ref"])["name"] for r in op["reply"]["messages"]}
                assert replies == {REPLIES[key]}

    def test_every_message_and_reply_type_is_described(self) -> None:
        """Each registered (type, version) is a message; each reply type answers a request the gateway asks."""
        doc = document()
        assert {f"{t}.v{v}" for t, v in registered()} == set(doc["components"]["messages"])
        reply_types = {t for t, _ in registered() if t.endswith(".reply")} | {m.WorkflowAccepted.TYPE}
        assert reply_types == set(REPLIES.values())
        assert set(REPLIES) == {k for keys in REQUESTS.values() for k in keys}
