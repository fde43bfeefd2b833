"""openai-worker settings: OPENAI_API_KEY, plus OPENAI_BASE_URL, OPENAI_MODEL and the call
timeout (30 s)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from libs.flags import FlagSettings
from libs.llm.constants import DEFAULT_OPENAI_TIMEOUT_S


class OpenAIWorkerSettings(FlagSettings):
    openai_api_key: SecretStr | None = Field(default=None, description="unset (and no base URL): the simulator")
    openai_base_url: str | None = Field(default=None, description="a proxy or compatible server; unset: OpenAI")
    openai_model: str = Field(default="gpt-4o-mini", min_length=1)
    openai_timeout_s: float = Field(default=DEFAULT_OPENAI_TIMEOUT_S, gt=0, description="upper bound of one call, s")
