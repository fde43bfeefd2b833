"""camelCase HTTP models derived from contract classes, so that a shape crossing the bus and the HTTP API is
declared once (in contracts/), not once per side kept in step by comments.

    CostStatsData = derived(cc.CostStats, "CostStatsData")
    Threshold = derived(cc.Threshold, "Threshold", aliases={"period": "type", "limit_usd": "threshold"})

A derived model has the contract class's fields — types, constraints, defaults, descriptions — under camelCase
names (the base's alias generator), or under `aliases` where the HTTP name differs. Inside the types, a
Decimal becomes `money` (schemas.Money: a JSON number in answers) and a contract class its derived model (so
derive nested classes first; one not derived yet is derived under its own name). `types` replaces a field's
type outright (e.g. a query's `from`, which accepts a bare day); `exclude` drops fields the HTTP side never
sees (a request's `requester` comes from the token). Validators are not copied: the contract's run when the
gateway builds the message from the derived model.
"""

from __future__ import annotations

import copy
import types as pytypes
import typing
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, create_model

from services.gateway.schemas import ApiModel, Money

# Each contract class's derived model, so that nested classes are replaced by theirs.
_DERIVED: dict[type[BaseModel], type[BaseModel]] = {}


def derived(
    contract: type[BaseModel],
    name: str,
    *,
    base: type[BaseModel] = ApiModel,
    aliases: Mapping[str, str] | None = None,
    types: Mapping[str, Any] | None = None,
    exclude: Collection[str] = ("requester",),
    money: Any = Money,
) -> type[BaseModel]:
    """The HTTP model `name` with `contract`'s fields (see the module docstring)."""
    aliases, types = aliases or {}, types or {}
    unknown = (set(aliases) | set(types)) - set(contract.model_fields)
    assert not unknown, f"{contract.__name__} has no field(s) {sorted(unknown)}"
    fields: dict[str, Any] = {}
    for field_name, info in contract.model_fields.items():
        if field_name in exclude:
            continue
        field = copy.copy(info)
        if field_name in aliases:
            field.alias = field.validation_alias = field.serialization_alias = aliases[field_name]
            field.alias_priority = 2  # over the base's alias generator
        annotation = types[field_name] if field_name in types else api_type(info.annotation, money)
        fields[field_name] = (annotation, field)
    model: type[BaseModel] = create_model(name, __base__=base, __doc__=contract.__doc__, **fields)
    _DERIVED.setdefault(contract, model)
    return model


def as_api(data: BaseModel) -> BaseModel:
    """`data`, an instance of a contract class, as its derived model's."""
    return _DERIVED[type(data)].model_validate(data.model_dump())


def api_type(annotation: Any, money: Any = Money) -> Any:
    """`annotation` with Decimal → `money` and contract classes → their derived models, at any depth."""
    if annotation is Decimal:
        return money
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and not issubclass(annotation, ApiModel):
        return _DERIVED.get(annotation) or derived(annotation, annotation.__name__, money=money)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return Annotated[(api_type(args[0], money), *args[1:])]
    if origin in (typing.Union, pytypes.UnionType):
        return typing.Union[tuple(api_type(arg, money) for arg in args)]  # noqa: UP007 (a tuple of types)
    if origin is list:
        return list[api_type(args[0], money)]  # type: ignore[misc]
    if origin is dict:
        return dict[api_type(args[0], money), api_type(args[1], money)]  # type: ignore[misc]
    return annotation
