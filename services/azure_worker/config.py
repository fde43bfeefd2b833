"""azure-worker settings: the AZURE_OPENAI_* variables plus the call timeout (45 s)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from libs.flags import FlagSettings
from libs.llm.constants import DEFAULT_AZURE_TIMEOUT_S


class AzureWorkerSettings(FlagSettings):
    azure_openai_endpoint: str | None = Field(
        default=None, description="https://<resource>.openai.azure.com; unset: the runner's LLM simulator"
    )
    azure_openai_api_key: SecretStr | None = Field(default=None, description="required with the endpoint")
    azure_openai_deployment: str = Field(default="gpt-4", min_length=1, description="deployment every call uses")
    azure_openai_api_version: str = Field(default="2024-06-01", min_length=1)
    azure_timeout_s: float = Field(default=DEFAULT_AZURE_TIMEOUT_S, gt=0, description="upper bound of one call, s")
