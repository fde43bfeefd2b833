"""The answer of GET /api/admin/accounts/{accountId}/window: camelCase models derived from the rate-limiter's
reply (contracts/rate_window.py declares every field once; derive.py says how). The reply's `error` is not a
field here: a window that could not be read is a 503."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, create_model

from contracts import rate_window as rw
from services.gateway.derive import derived
from services.gateway.schemas import ApiModel


class WindowAnswer(ApiModel):
    # Fields with a default are always sent, so the document lists them as required in answers.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


AccountLimits = derived(rw.AccountLimits, "AccountLimits", base=WindowAnswer)
AccountWindowData = derived(rw.RateWindow, "AccountWindowData", base=WindowAnswer, exclude=("error",))
AccountWindowResponse: type[BaseModel] = create_model(
    "AccountWindowResponse", __base__=ApiModel, success=(Literal[True], True), data=(AccountWindowData, ...)
)
